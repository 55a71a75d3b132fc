//! Credentials from every docker config form, served over a real tonic server and
//! asked for with the generated Auth client (the daemon's side); helpers are real
//! programs found on a PATH list.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use bollard_buildkit_proto::moby::filesync::v1::auth_client::AuthClient;
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, FetchTokenRequest, GetTokenAuthorityRequest, VerifyTokenAuthorityRequest,
};

use super::*;
use crate::buildkit::session::auth::AuthService;
use crate::buildkit::session::test_transport::serve;

fn config(dir: &Path, json: &str) -> DockerConfig {
    std::fs::write(dir.join("config.json"), json).unwrap();
    DockerConfig::load(dir).unwrap()
}

async fn ask(
    client: &mut AuthClient<tonic::transport::Channel>,
    host: &str,
) -> Result<(String, String), tonic::Status> {
    let r = client
        .credentials(CredentialsRequest { host: host.into() })
        .await?
        .into_inner();
    Ok((r.username, r.secret))
}

fn pair(u: &str, s: &str) -> (String, String) {
    (u.into(), s.into())
}

#[tokio::test]
async fn auths_entries_in_every_form() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        r#"{
          "auths": {
            "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcjpldA=="},
            "https://legacy.example:8443/v1/": {"username": "bob", "password": "pw"},
            "https://index.docker.io/v1/": {"identitytoken": "id-token"},
            "utf8.example": {"auth": "w7xuw686cMOkc3M=", "email": "ignored@example.com"},
            "empty.example": {}
          },
          "psFormat": "unrelated settings are ignored"
        }"#,
    );
    let served = serve(AuthService::new(cfg).into_server()).await;
    let mut client = AuthClient::new(served.channel.clone());
    assert_eq!(
        ask(&mut client, "127.0.0.1:5000").await.unwrap(),
        pair("alice", "s3cr:et")
    );
    assert_eq!(
        ask(&mut client, "legacy.example:8443").await.unwrap(),
        pair("bob", "pw")
    );
    assert_eq!(
        ask(&mut client, "registry-1.docker.io").await.unwrap(),
        pair("", "id-token")
    );
    assert_eq!(
        ask(&mut client, "utf8.example").await.unwrap(),
        pair("ünï", "päss")
    );
    assert_eq!(
        ask(&mut client, "empty.example").await.unwrap(),
        pair("", "")
    );
    assert_eq!(
        ask(&mut client, "other.example").await.unwrap(),
        pair("", "")
    );
}

#[tokio::test]
async fn no_config_is_anonymous_and_a_broken_one_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DockerConfig::load(tmp.path()).unwrap();
    assert!(cfg
        .credentials("127.0.0.1:5000")
        .await
        .unwrap()
        .is_anonymous());
    std::fs::write(tmp.path().join("config.json"), "{\"auths\": {").unwrap();
    let err = DockerConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("fix the JSON"),
        "{err}"
    );
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"auths":{"h":{"auth":"%%%"}}}"#,
    )
    .unwrap();
    let err = DockerConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("auths[\"h\"].auth is not valid base64"),
        "{err}"
    );
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#,
    )
    .unwrap();
    let err = DockerConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("not user:password"), "{err}");
}

#[test]
fn the_config_dir_is_docker_config_else_home_dot_docker() {
    assert_eq!(
        config_dir(Some("/cfg".into()), Some("/home/u".into())),
        Some("/cfg".into())
    );
    assert_eq!(
        config_dir(Some("".into()), Some("/home/u".into())),
        Some("/home/u/.docker".into())
    );
    assert_eq!(
        config_dir(None, Some("/home/u".into())),
        Some("/home/u/.docker".into())
    );
    assert_eq!(config_dir(None, None), None);
}

/// A real `docker-credential-test`: logs its argument and stdin, answers per host.
fn helper(bin: &Path, log: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        r#"#!/bin/sh
host=$(cat)
echo "$1 $host" >> {log}
case "$host" in
  127.0.0.1:5000) echo '{{"ServerURL":"127.0.0.1:5000","Username":"helper-user","Secret":"helper-pass"}}' ;;
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"<token>","Secret":"hub-token"}}' ;;
  bad.example) echo "boom: keychain locked"; exit 3 ;;
  garbage.example) echo "not json" ;;
  slow.example) exec sleep 30 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
        log = log.display()
    );
    let path = bin.join("docker-credential-test");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn creds_store_and_cred_helpers_run_docker_credential_programs() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    let log = tmp.path().join("helper.log");
    helper(&bin, &log);
    let search = std::env::join_paths([tmp.path().join("empty"), bin.clone()]).unwrap();
    // credsStore: every registry through the helper, whatever auths says.
    let cfg = config(
        tmp.path(),
        r#"{"auths": {"127.0.0.1:5000": {"auth": "eDp5"}}, "credsStore": "test"}"#,
    )
    .with_search_path(search.clone())
    .with_helper_timeout(Duration::from_secs(2));
    let served = serve(AuthService::new(cfg).into_server()).await;
    let mut client = AuthClient::new(served.channel.clone());
    assert_eq!(
        ask(&mut client, "127.0.0.1:5000").await.unwrap(),
        pair("helper-user", "helper-pass")
    );
    assert_eq!(
        ask(&mut client, "127.0.0.1:5000").await.unwrap(),
        pair("helper-user", "helper-pass")
    );
    assert_eq!(
        ask(&mut client, "registry-1.docker.io").await.unwrap(),
        pair("", "hub-token")
    );
    assert_eq!(
        ask(&mut client, "nothing.example").await.unwrap(),
        pair("", "")
    );
    let err = ask(&mut client, "bad.example").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("docker-credential-test")
            && err.message().contains("keychain locked"),
        "{}",
        err.message()
    );
    let err = ask(&mut client, "garbage.example").await.unwrap_err();
    assert!(
        err.message().contains("not the expected JSON") && !err.message().contains("not json"),
        "{}",
        err.message()
    );
    let started = std::time::Instant::now();
    let err = ask(&mut client, "slow.example").await.unwrap_err();
    assert!(
        err.message().contains("no answer") && started.elapsed() < Duration::from_secs(10),
        "{}",
        err.message()
    );
    // Asked with `get` and the host on stdin; once per host.
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(
        lines,
        [
            "get 127.0.0.1:5000",
            "get https://index.docker.io/v1/",
            "get nothing.example",
            "get bad.example",
            "get garbage.example",
            "get slow.example"
        ]
    );

    // credHelpers: only the named registry uses the helper; the rest use auths.
    let cfg = config(
        tmp.path(),
        r#"{"auths": {"other.example": {"auth": "eDp5"}}, "credHelpers": {"127.0.0.1:5000": "test"}}"#,
    )
    .with_search_path(search.clone());
    let served = serve(AuthService::new(cfg).into_server()).await;
    let mut client = AuthClient::new(served.channel.clone());
    assert_eq!(
        ask(&mut client, "127.0.0.1:5000").await.unwrap(),
        pair("helper-user", "helper-pass")
    );
    assert_eq!(
        ask(&mut client, "other.example").await.unwrap(),
        pair("x", "y")
    );

    // A helper that is not installed: named, with the file that asks for it.
    let cfg = config(tmp.path(), r#"{"credsStore": "nope"}"#).with_search_path(search);
    let served = serve(AuthService::new(cfg).into_server()).await;
    let mut client = AuthClient::new(served.channel.clone());
    let err = ask(&mut client, "127.0.0.1:5000").await.unwrap_err();
    assert!(
        err.message().contains("docker-credential-nope") && err.message().contains("config.json"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn token_authority_calls_answer_unimplemented_so_the_daemon_uses_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let served =
        serve(AuthService::new(DockerConfig::load(tmp.path()).unwrap()).into_server()).await;
    let mut client = AuthClient::new(served.channel.clone());
    let e = client
        .get_token_authority(GetTokenAuthorityRequest {
            host: "h".into(),
            salt: vec![1],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let e = client
        .fetch_token(FetchTokenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
    let e = client
        .verify_token_authority(VerifyTokenAuthorityRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        r#"{"auths": {"127.0.0.1:5000": {"auth": "YWxpY2U6czNjcjpldA=="}, "t": {"identitytoken": "tok-123"}}}"#,
    );
    let cred = cfg.credentials("127.0.0.1:5000").await.unwrap();
    assert_eq!(cred.secret, "s3cr:et");
    let shown = format!("{cred:?} {:?} {cfg:?}", cfg.credentials("t").await.unwrap());
    assert!(
        !shown.contains("s3cr") && !shown.contains("tok-123") && !shown.contains("YWxp"),
        "{shown}"
    );
    assert!(
        shown.contains("alice") && shown.contains("<redacted>"),
        "{shown}"
    );
}
