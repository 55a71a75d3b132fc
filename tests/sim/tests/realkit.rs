//! The real-BuildKit fixture itself: private dockerd up with the busybox image, their
//! BuildKit answering an HTTP/2 preface with its SETTINGS frame through `POST /grpc`,
//! the registry's /v2/ (open, and 401 with users), and nothing left behind whether the
//! test process exits normally (atexit) or is killed (the reaper).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube_sim::harness::OutputBounded;
use std::time::{Duration, Instant};

use kube_sim::realkit::{FixtureOptions, RealBuildkit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client connection preface plus an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Env var that turns [`child_fixture`] into the helper process of the leftover tests.
const CHILD_MODE: &str = "REALKIT_TEST_CHILD";
/// Where the helper writes its fixture directory.
const CHILD_REPORT: &str = "REALKIT_TEST_CHILD_REPORT";

#[tokio::test]
async fn daemons_serve_buildkit_over_h2c_and_registry_answers() {
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    eprintln!("shared fixture started in {:?}", kit.started_in());
    assert_eq!(kit.daemons().len(), 2);
    for d in kit.daemons() {
        assert!(d.docker_host().starts_with("unix:///"));
        let out = d
            .docker()
            .args(["image", "inspect", "--format", "{{.Id}}", d.busybox_image()])
            .output_bounded();
        assert!(
            out.status.success(),
            "busybox missing in {}: {}",
            d.docker_host(),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = d.dial_buildkit().await.unwrap();
        s.write_all(H2_PREFACE).await.unwrap();
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
            .await
            .expect("BuildKit answered the preface within 10 s")
            .unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
        assert_eq!(head[3], 4, "first frame is SETTINGS: {head:?}");
        assert_eq!(head[4] & 1, 0, "the server's own SETTINGS, not an ACK");
        assert_eq!(&head[5..9], &[0, 0, 0, 0], "on stream 0");
        assert_eq!(len % 6, 0, "SETTINGS payload is 6-byte entries");
    }
    let a = kit.registry().get("/v2/", &[]).unwrap();
    assert_eq!(a.status, 200, "open registry /v2/");
    assert!(kit.registry().host().starts_with("127.0.0.1:"));
}

#[test]
fn registry_with_users_wants_credentials_and_leaves_nothing() {
    let users = vec![("alice".to_string(), "s3cret-pw".to_string())];
    let kit = match RealBuildkit::start(FixtureOptions {
        daemons: 0,
        registry_users: users,
    }) {
        Ok(kit) => kit,
        Err(e) => return kube_sim::realkit::skip_or_fail(&e),
    };
    let addr = kit.registry().addr();
    assert_eq!(v2_status(addr, None), 401, "anonymous /v2/");
    assert_eq!(
        v2_status(addr, Some(("alice", "wrong"))),
        401,
        "wrong password"
    );
    assert_eq!(
        v2_status(addr, Some(("alice", "s3cret-pw"))),
        200,
        "right password"
    );
    assert_eq!(
        kit.registry().get("/v2/", &[]).unwrap().status,
        200,
        "Registry::get logs in"
    );
    let dir = kit.dir().to_path_buf();
    drop(kit);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_no_process_names(&dir);
}

fn v2_status(addr: std::net::SocketAddr, login: Option<(&str, &str)>) -> u16 {
    use base64::Engine;
    use std::io::Write;
    let mut s = std::io::BufReader::new(std::net::TcpStream::connect(addr).unwrap());
    let auth = login
        .map(|(u, p)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {b64}\r\n")
        })
        .unwrap_or_default();
    write!(
        s.get_mut(),
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn nothing_left_behind_when_the_test_process_exits() {
    let Some((dir, mut child)) = spawn_child("exit") else {
        return;
    };
    let status = kube_sim::harness::wait_within(&mut child, kube_sim::harness::CHILD_DEADLINE);
    assert!(status.success(), "helper process failed: {status}");
    // atexit waited for the reaper: everything is gone the moment the process is.
    assert!(!dir.exists(), "{} left behind after exit", dir.display());
    assert_no_process_names(&dir);
    assert_no_mount_under(&dir);
}

#[test]
fn nothing_left_behind_when_the_test_process_is_killed() {
    let Some((dir, mut child)) = spawn_child("hang") else {
        return;
    };
    assert!(
        dir.join("d0/docker.sock").exists(),
        "the helper's daemon runs"
    );
    child.kill().unwrap(); // SIGKILL: no atexit, no Drop; only the reaper is left.
    kube_sim::harness::wait_within(&mut child, kube_sim::harness::CHILD_DEADLINE);
    let start = Instant::now();
    while dir.exists() && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "{} left behind after SIGKILL", dir.display());
    assert_no_process_names(&dir);
    assert_no_mount_under(&dir);
}

/// Run this binary's [`child_fixture`] in a child process in `mode`; returns the
/// fixture directory it reported. None (after the loud line) when unavailable.
fn spawn_child(mode: &str) -> Option<(PathBuf, std::process::Child)> {
    let report = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&report).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_fixture",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_REPORT, &report)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&report) {
            if let Some(dir) = text.strip_suffix('\n') {
                return Some((PathBuf::from(dir), child));
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "helper failed: {status}");
            if let Ok(text) = std::fs::read_to_string(&report) {
                return Some((PathBuf::from(text.trim_end()), child));
            }
            return None; // unavailable: the helper printed the loud line (CI: it failed)
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "helper did not start its fixture in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Helper process of the two leftover tests (does nothing unless REALKIT_TEST_CHILD is
/// set): starts the shared fixture, writes its directory to REALKIT_TEST_CHILD_REPORT,
/// then exits ("exit") or waits to be killed ("hang").
#[test]
fn child_fixture() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let Some(kit) = RealBuildkit::shared() else {
        return;
    };
    let report = std::env::var(CHILD_REPORT).unwrap();
    let tmp = format!("{report}.tmp");
    std::fs::write(&tmp, format!("{}\n", kit.dir().display())).unwrap();
    std::fs::rename(&tmp, &report).unwrap();
    if mode == "hang" {
        std::thread::sleep(Duration::from_secs(600));
    }
}

fn assert_no_process_names(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let start = Instant::now();
    loop {
        let left = kube_sim::harness::processes_naming(&needle);
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "processes left behind: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_no_mount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let needle = dir.to_string_lossy().into_owned();
    assert!(
        !mounts.contains(&needle),
        "mounts left behind under {}",
        dir.display()
    );
}
