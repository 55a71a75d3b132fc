use std::time::Duration;

use super::super::model::{Change, ProgressModel};
use super::super::{BuildSummary, FailedStep};
use super::*;

fn fold(stream: &[StatusResponse]) -> (ProgressModel, Vec<Change>) {
    let mut model = ProgressModel::new();
    let mut changes = Vec::new();
    for resp in stream {
        changes.extend(model.apply(resp));
    }
    changes.extend(model.finish());
    (model, changes)
}

#[test]
fn steps_keep_the_order_the_daemon_named_them_in() {
    let (model, _) = fold(&failing_build());
    let digests: Vec<&str> = model.steps().iter().map(|s| s.digest.as_str()).collect();
    assert_eq!(digests, [DEF, IGNORE, FROM, RUN]);
    let from = model.step(2);
    assert!(from.cached && from.completed() && from.error.is_empty());
    let run = model.step(3);
    assert!(run.failed() && !run.canceled() && run.completed());
    assert_eq!(run.duration(0), Duration::from_millis(1300));
    assert_eq!(model.first_start(), Some(nanos_at(0)));
}

#[test]
fn log_lines_are_split_and_a_partial_line_waits_for_its_end() {
    let stream = failing_build();
    let mut model = ProgressModel::new();
    let mut logs = Vec::new();
    for (n, resp) in stream.iter().enumerate() {
        for change in model.apply(resp) {
            if let Change::Log(_, line) = change {
                logs.push((n, line.shown()));
            }
        }
    }
    // "hal" + "f\n" is one line, timed from its first piece; "li" + "ne" ends when the
    // step does.
    assert_eq!(
        logs,
        [
            (7, "0.212 building".to_string()),
            (8, "0.212 half".to_string()),
            (10, "0.400 line".to_string()),
        ]
    );
}

#[test]
fn an_unfinished_line_is_complete_when_the_stream_ends() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().started(RUN, "run", 0).0);
    assert_eq!(model.apply(&Resp::new().log(RUN, 2500, "no newline").0), []);
    let end = model.finish();
    assert_eq!(end.len(), 1, "{end:?}");
    let Change::Log(0, line) = &end[0] else {
        panic!("{end:?}")
    };
    assert_eq!(line.shown(), "2.500 no newline");
    assert_eq!(model.finish(), [], "only once");
}

#[test]
fn a_repeated_announcement_does_not_undo_a_running_step() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().started(RUN, "run", 100).0);
    let changes = model.apply(&Resp::new().named(RUN, "run").0);
    assert_eq!(changes, []);
    assert!(model.step(0).started());
    // An unchanged repeat of a started step is no change either.
    assert_eq!(model.apply(&Resp::new().started(RUN, "run", 100).0), []);
}

#[test]
fn a_step_keeps_only_its_last_ten_lines() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().started(RUN, "run", 0).0);
    let many: String = (1..=25).map(|i| format!("line {i}\n")).collect();
    let changes = model.apply(&Resp::new().log(RUN, 10, &many).0);
    assert_eq!(changes.len(), 25);
    let kept: Vec<&str> = model
        .step(0)
        .recent_logs
        .iter()
        .map(|l| l.text.as_str())
        .collect();
    let want: Vec<String> = (16..=25).map(|i| format!("line {i}")).collect();
    assert_eq!(kept, want);
    assert_eq!(model.step(0).log_bytes, many.len() as u64);
}

#[test]
fn runs_of_a_step_add_up_and_overlaps_count_once() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().done(RUN, "run", 0, 1000).0);
    model.apply(&Resp::new().done(RUN, "run", 500, 1500).0);
    model.apply(&Resp::new().done(RUN, "run", 3000, 3250).0);
    let step = model.step(0);
    assert_eq!(step.intervals.len(), 2, "{:?}", step.intervals);
    assert_eq!(step.duration(0), Duration::from_millis(1750));
    // A run still going counts up to now.
    model.apply(&Resp::new().started(RUN, "run", 4000).0);
    let step = model.step(0);
    assert!(!step.completed());
    assert_eq!(step.duration(nanos_at(4100)), Duration::from_millis(1850));
}

/// The daemon sends a step's state, not every event: a run it never reported as
/// stopped can be followed by a later run that did stop (seen from dockerd's
/// BuildKit under load, a FROM step). The step ended; it must not stay running.
#[test]
fn a_later_finished_run_ends_a_run_never_reported_stopped() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().started(FROM, "from", 0).0);
    model.apply(&Resp::new().done(FROM, "from", 200, 300).0);
    let step = model.step(0);
    assert!(step.completed(), "{:?}", step.intervals);
    assert_eq!(step.duration(nanos_at(10_000)), Duration::from_millis(300));
    // Still running when the later run has not stopped either.
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().started(FROM, "from", 0).0);
    model.apply(&Resp::new().started(FROM, "from", 200).0);
    assert!(!model.step(0).completed());
}

#[test]
fn a_cancelled_step_is_not_a_failure() {
    let mut model = ProgressModel::new();
    model.apply(
        &Resp::new()
            .failed(
                RUN,
                "run",
                0,
                100,
                "rpc error: code = Canceled desc = context canceled",
            )
            .0,
    );
    assert!(model.step(0).canceled() && !model.step(0).failed());
    let summary = BuildSummary::of(&model);
    assert_eq!(summary.failed, None);
    assert_eq!(
        summary.vertices[0].error.as_deref(),
        Some("rpc error: code = Canceled desc = context canceled")
    );
}

#[test]
fn statuses_logs_and_warnings_of_unknown_steps_are_dropped() {
    let mut model = ProgressModel::new();
    let changes = model.apply(
        &Resp::new()
            .log(RUN, 0, "x\n")
            .task(RUN, "t", (1, 2), 0, 0, None)
            .warn(RUN, "w")
            .0,
    );
    assert_eq!(changes, []);
    assert!(model.steps().is_empty());
}

#[test]
fn the_summary_names_every_step_and_the_failure() {
    let (model, _) = fold(&failing_build());
    let summary = BuildSummary::of(&model);
    let names: Vec<&str> = summary.vertices.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "[internal] load build definition from Dockerfile",
            "[internal] load .dockerignore",
            "[1/2] FROM docker.io/local/busybox:1",
            RUN_NAME,
        ]
    );
    let def = &summary.vertices[0];
    assert!(def.started && def.completed && !def.cached && def.error.is_none());
    assert_eq!(def.duration, Some(Duration::from_millis(120)));
    assert!(summary.vertices[2].cached);
    assert_eq!(summary.vertices[2].duration, Some(Duration::ZERO));
    assert_eq!(summary.vertices[3].error.as_deref(), Some(RUN_ERROR));
    let failed = summary.failed.expect("a failed step");
    assert_eq!(
        failed,
        FailedStep {
            name: RUN_NAME.into(),
            error: RUN_ERROR.into(),
            last_logs: vec![
                "0.212 building".into(),
                "0.212 half".into(),
                "0.400 line".into()
            ],
        }
    );
    assert_eq!(
        failed.to_string(),
        format!("------\n > {RUN_NAME}:\n0.212 building\n0.212 half\n0.400 line\n------")
    );
}

#[test]
fn a_step_not_yet_started_is_in_the_summary_as_such() {
    let mut model = ProgressModel::new();
    model.apply(&Resp::new().named(RUN, "run").0);
    let summary = BuildSummary::of(&model);
    let v = &summary.vertices[0];
    assert!(!v.started && !v.completed && v.duration.is_none());
}
