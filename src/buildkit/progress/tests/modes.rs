use super::super::{BadProgressMode, ModeSource, ProgressMode};

#[test]
fn auto_is_tty_on_a_terminal_and_plain_elsewhere() {
    assert_eq!(
        ProgressMode::resolve(None, None, true),
        Ok(ProgressMode::Tty)
    );
    assert_eq!(
        ProgressMode::resolve(None, None, false),
        Ok(ProgressMode::Plain)
    );
    assert_eq!(
        ProgressMode::resolve(Some("auto"), None, false),
        Ok(ProgressMode::Plain)
    );
    assert_eq!(
        ProgressMode::resolve(None, Some(""), true),
        Ok(ProgressMode::Tty)
    );
}

#[test]
fn the_flag_wins_over_buildkit_progress() {
    assert_eq!(
        ProgressMode::resolve(Some("plain"), Some("rawjson"), true),
        Ok(ProgressMode::Plain)
    );
    assert_eq!(
        ProgressMode::resolve(None, Some("rawjson"), true),
        Ok(ProgressMode::RawJson)
    );
    assert_eq!(
        ProgressMode::resolve(None, Some("quiet"), false),
        Ok(ProgressMode::Quiet)
    );
    assert_eq!(
        ProgressMode::resolve(Some("tty"), Some("bogus"), true),
        Ok(ProgressMode::Tty)
    );
}

#[test]
fn a_bad_mode_names_where_it_came_from_and_the_choices() {
    let err = ProgressMode::resolve(Some("fancy"), None, true).unwrap_err();
    assert_eq!(
        err,
        BadProgressMode::Unknown {
            value: "fancy".into(),
            from: ModeSource::Flag
        }
    );
    assert_eq!(
        err.to_string(),
        "--progress \"fancy\" is not a progress mode: use auto, tty, plain, rawjson or quiet"
    );
    let err = ProgressMode::resolve(None, Some("Plain"), true).unwrap_err();
    assert!(
        err.to_string().starts_with("BUILDKIT_PROGRESS \"Plain\""),
        "{err}"
    );
}

#[test]
fn tty_without_a_terminal_is_refused() {
    let err = ProgressMode::resolve(Some("tty"), None, false).unwrap_err();
    assert_eq!(
        err,
        BadProgressMode::NotATerminal {
            from: ModeSource::Flag
        }
    );
    assert!(err.to_string().contains("use plain"), "{err}");
    let err = ProgressMode::resolve(None, Some("tty"), false).unwrap_err();
    assert!(
        err.to_string().starts_with("BUILDKIT_PROGRESS tty"),
        "{err}"
    );
}
