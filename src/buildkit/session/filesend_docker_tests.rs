//! `docker load` as a sink: a real /usr/bin/docker against a real dockerd of our own
//! (private dirs under /tmp/session-dockerd, stopped by its pidfile), its failure as a
//! typed error, and the child gone when the daemon cancels the export.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard_buildkit_proto::moby::filesync::v1::file_send_client::FileSendClient as BytesClient;
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage;
use tonic::Request;

use super::super::*;
use super::send_bytes;
use crate::buildkit::session::test_transport::serve;

const DOCKER: &str = "/usr/bin/docker";

/// A dockerd of our own; stopped by its pidfile and removed on drop.
struct Dockerd {
    dir: PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = PathBuf::from(format!("/tmp/session-dockerd/t{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("/usr/sbin/dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=vfs"])
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let child = child.expect("start /usr/sbin/dockerd");
        let d = Dockerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up: see {}",
                d.dir.join("log").display()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        d
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new(DOCKER)
            .args(args)
            .env("DOCKER_HOST", self.host())
            .output()
            .expect("run docker")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(15);
                while alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if alive(pid) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Running (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// A docker image tarball as `docker save` writes it, and the image's id.
fn saved_image(d: &Dockerd, dir: &Path, name: &str) -> (Vec<u8>, String) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | {DOCKER} import - {name}",
            rootfs.display()
        ))
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let id = image_id(d, name).expect("imported");
    let tar = dir.join("image.tar");
    let save = d.docker(&["save", "-o", tar.to_str().unwrap(), name]);
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    assert!(d.docker(&["rmi", name]).status.success());
    assert!(image_id(d, name).is_none(), "removed before the load");
    (std::fs::read(tar).unwrap(), id)
}

fn image_id(d: &Dockerd, name: &str) -> Option<String> {
    let out = d.docker(&["image", "inspect", "--format", "{{.Id}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn docker_load_puts_the_streamed_image_into_a_real_dockerd() {
    let d = Dockerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let name = "session-test/busybox:1";
    let (tar, id) = saved_image(&d, tmp.path(), name);
    let svc = FileSendService::new(vec![ExportSink::DockerLoad {
        docker: DOCKER.into(),
        docker_host: Some(d.host()),
    }]);
    let served = serve(svc.clone()).await;
    // The daemon's chunk size: 3 MiB.
    send_bytes(served.channel.clone(), "0", &tar, 3 << 20)
        .await
        .unwrap();
    assert_eq!(
        image_id(&d, name).as_deref(),
        Some(id.as_str()),
        "loaded, same image id"
    );
    assert_eq!(svc.outcomes()[0].result, Ok(tar.len() as u64));

    // A truncated tarball: docker load's own failure, as a typed error.
    assert!(d.docker(&["rmi", name]).status.success());
    let svc = FileSendService::new(vec![ExportSink::DockerLoad {
        docker: DOCKER.into(),
        docker_host: Some(d.host()),
    }]);
    let served = serve(svc.clone()).await;
    let err = send_bytes(served.channel.clone(), "0", &tar[..tar.len() / 3], 1 << 20)
        .await
        .unwrap_err();
    assert!(err.message().contains("load` failed"), "{}", err.message());
    match &svc.outcomes()[0].result {
        Err(ExportError::DockerLoad { status, stderr, .. }) => {
            assert_eq!(status, "exit code 1");
            assert!(!stderr.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(image_id(&d, name).is_none());
}

#[tokio::test]
async fn docker_load_that_cannot_reach_its_daemon_reports_docker_s_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", tmp.path().join("nothing.sock").display());
    let svc = FileSendService::new(vec![ExportSink::DockerLoad {
        docker: DOCKER.into(),
        docker_host: Some(host),
    }]);
    let served = serve(svc.clone()).await;
    let data = vec![0u8; 4 << 20];
    let err = send_bytes(served.channel.clone(), "0", &data, 1 << 20)
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("Cannot connect to the Docker daemon"),
        "{}",
        err.message()
    );
    match &svc.outcomes()[0].result {
        Err(ExportError::DockerLoad { status, stderr, .. }) => {
            assert_eq!(status, "exit code 1");
            assert!(stderr.contains("nothing.sock"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
    // A docker that is not there: named, with the way out.
    let svc = FileSendService::new(vec![ExportSink::DockerLoad {
        docker: tmp.path().join("no-docker"),
        docker_host: None,
    }]);
    let served = serve(svc.clone()).await;
    let err = send_bytes(served.channel.clone(), "0", b"x", 1)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("no-docker") && err.message().contains("--docker"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn docker_load_dies_when_the_daemon_cancels_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    // A stand-in for docker that records its pid (in DOCKER_HOST) and
    // never exits on its own (it does not even read stdin): only a kill ends it.
    let script = tmp.path().join("docker");
    std::fs::write(
        &script,
        "#!/bin/sh\necho $$ > \"$DOCKER_HOST\"\nexec sleep 300\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pidfile = tmp.path().join("pid");
    let svc = FileSendService::new(vec![ExportSink::DockerLoad {
        docker: script,
        docker_host: Some(pidfile.to_string_lossy().into_owned()),
    }]);
    let served = serve(svc.clone()).await;
    let channel = served.channel.clone();
    let call = tokio::spawn(async move {
        let first = futures::stream::iter([BytesMessage {
            data: vec![1; 1024],
        }]);
        let req = Request::new(futures::StreamExt::chain(first, futures::stream::pending()));
        let _ = BytesClient::new(channel).diff_copy(req).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the stand-in never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(alive(pid));
    call.abort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "docker load outlived the cancelled export"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
