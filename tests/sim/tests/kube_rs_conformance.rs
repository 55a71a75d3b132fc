//! kube-rs 5 (the plugin's client) against the simulated cluster: list with selectors,
//! exec and port-forward over WebSocket moving 64 MiB, exit statuses, RBAC, vanished
//! pods and faults.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, MIB, NS};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_sim::buildkitd::client;
use kube_sim::{ServerFaults, Sim};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

async fn pods(sim: &Sim, user: &str) -> Api<Pod> {
    let kc = Kubeconfig::read_from(sim.kubeconfig()).unwrap();
    let opts = KubeConfigOptions {
        context: Some(user.into()),
        ..KubeConfigOptions::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .unwrap();
    assert_eq!(cfg.default_namespace, NS);
    Api::default_namespaced(kube::Client::try_from(cfg).unwrap())
}

fn tunnel_params() -> AttachParams {
    AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(false)
        .max_stdin_buf_size(1 << 20)
        .max_stdout_buf_size(1 << 20)
}

/// The exit code an exec status reports.
fn exit_code(st: &Status) -> Option<&str> {
    st.details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_deref()
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_label_selectors() {
    let sim = Sim::start(cluster()).unwrap();
    let api = pods(&sim, "admin").await;
    let names = |list: kube::api::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    let got = names(
        api.list(&ListParams::default().labels("app=buildkitd,tier in (hot,warm)"))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["buildkitd-0", "buildkitd-1"]);
    let got = names(
        api.list(&ListParams::default().labels("app,!tier"))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["web-0"]);
    let p = api.get("buildkitd-2").await.unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert!(status.pod_ip.unwrap().starts_with("10.244."));
    let e = api
        .list(&ListParams::default().labels("app in ("))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 400);

    // Server faults: errors, garbage and latency.
    sim.set_faults(ServerFaults {
        list_error: Some(500),
        ..ServerFaults::default()
    });
    assert_eq!(
        api_code(&api.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    sim.set_faults(ServerFaults {
        list_garbage: true,
        ..ServerFaults::default()
    });
    let e = api.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(e, kube::Error::SerdeError(_)), "{e:?}");
    sim.set_faults(ServerFaults {
        api_latency_ms: 300,
        ..ServerFaults::default()
    });
    let t = Instant::now();
    api.get("buildkitd-0").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
}

/// exec `buildctl dial-stdio` in `pod` through kube-rs: its greeting names the pod,
/// `len` bytes echo back byte-exact, and the exit status is Success.
async fn dial_stdio_echo(api: &Api<Pod>, pod: &str, len: u64) {
    let mut proc = api
        .exec(pod, ["buildctl", "dial-stdio"], &tunnel_params())
        .await
        .unwrap();
    let mut stdout = proc.stdout().unwrap();
    let stdin = proc.stdin().unwrap();
    let status = proc.take_status().unwrap();
    let moved = timeout(Duration::from_secs(60), async {
        let id = client::hello(&mut stdout).await?;
        assert_eq!(id.pod, pod);
        client::echo(tokio::io::join(stdout, stdin), len).await
    })
    .await
    .expect("timed out");
    assert_eq!(moved.unwrap(), len);
    let status = timeout(Duration::from_secs(10), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
    timeout(Duration::from_secs(10), proc.join())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_dial_stdio_moves_64_mib_both_ways() {
    let sim = Sim::start(cluster()).unwrap();
    let api = pods(&sim, "admin").await;
    dial_stdio_echo(&api, "buildkitd-2", 64 * MIB).await;
    let s = sim.stats(NS, "buildkitd-2");
    assert!(
        s.bytes_in >= 64 * MIB && s.bytes_out >= 64 * MIB && s.active == 0,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_statuses_and_errors() {
    let sim = Sim::start(cluster()).unwrap();
    let api = pods(&sim, "admin").await;
    let run = |cmd: Vec<&'static str>| {
        let api = api.clone();
        let session = async move {
            let ap = AttachParams::default()
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut proc = api.exec("buildkitd-0", cmd, &ap).await.unwrap();
            let mut err = String::new();
            proc.stderr()
                .unwrap()
                .read_to_string(&mut err)
                .await
                .unwrap();
            let status = proc.take_status().unwrap().await.unwrap();
            proc.join().await.unwrap();
            (status, err)
        };
        async move {
            timeout(Duration::from_secs(20), session)
                .await
                .expect("exec timed out")
        }
    };
    let (st, _) = run(vec!["false"]).await;
    assert_eq!(st.status.as_deref(), Some("Failure"));
    assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(exit_code(&st), Some("1"));
    let cause = &st.details.as_ref().unwrap().causes.as_ref().unwrap()[0];
    assert_eq!(cause.reason.as_deref(), Some("ExitCode"));
    assert!(
        st.message.as_deref().unwrap_or("").contains("exit code 1"),
        "{st:?}"
    );
    let (st, _) = run(vec!["true"]).await;
    assert_eq!(st.status.as_deref(), Some("Success"));

    sim.update_pod(NS, "buildkitd-0", |p| p.faults.buildctl_missing = true);
    let (st, err) = run(vec!["buildctl", "dial-stdio"]).await;
    assert_eq!(exit_code(&st), Some("127"));
    assert!(
        err.contains("exec: \"buildctl\": executable file not found in $PATH"),
        "{err}"
    );

    // RBAC: a user without pods/exec.
    let noexec = pods(&sim, "noexec").await;
    let e = noexec
        .exec("buildkitd-1", ["true"], &AttachParams::default())
        .await
        .err()
        .expect("an error");
    assert_eq!(api_code(&e), 403);
    assert!(
        e.to_string()
            .contains("cannot create resource \"pods/exec\""),
        "{e}"
    );

    // Deleted between list and exec.
    sim.update_pod(NS, "buildkitd-1", |p| p.faults.vanished = true);
    let listed = api
        .list(&ListParams::default().labels("app=buildkitd"))
        .await
        .unwrap();
    assert!(listed
        .items
        .iter()
        .any(|p| p.metadata.name.as_deref() == Some("buildkitd-1")));
    let e = api
        .exec("buildkitd-1", ["true"], &AttachParams::default())
        .await
        .err()
        .expect("an error");
    assert_eq!(api_code(&e), 404);
    assert_eq!(api_code(&api.get("buildkitd-1").await.unwrap_err()), 404);
    let e = api
        .portforward("buildkitd-1", &[1234])
        .await
        .err()
        .expect("an error");
    assert_eq!(api_code(&e), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portforward_moves_64_mib_and_reports_closed_ports() {
    let sim = Sim::start(cluster()).unwrap();
    let api = pods(&sim, "noexec").await; // port-forward needs no pods/exec
    let mut pf = api.portforward("buildkitd-1", &[1234]).await.unwrap();
    let mut stream = pf.take_stream(1234).unwrap();
    let moved = timeout(Duration::from_secs(60), async {
        let id = client::hello(&mut stream).await?;
        assert_eq!(id.pod, "buildkitd-1");
        // echo sends QUIT at the end: port-forward has no half-close.
        client::echo(stream, 64 * MIB).await
    })
    .await
    .expect("timed out");
    assert_eq!(moved.unwrap(), 64 * MIB);
    // The pod side closed first, so the server closed the WebSocket (as the kubelet
    // does); kube-rs then fails to send its own Close (SendAfterClosing) from join():
    // only require that it ends.
    timeout(Duration::from_secs(10), pf.join())
        .await
        .unwrap()
        .ok();
    let s = sim.stats(NS, "buildkitd-1");
    assert!(
        s.connections == 1 && s.bytes_in >= 64 * MIB && s.bytes_out >= 64 * MIB,
        "{s:?}"
    );

    let mut pf = api.portforward("buildkitd-1", &[8080]).await.unwrap();
    let err = timeout(Duration::from_secs(10), pf.take_error(8080).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        err.contains("error forwarding port 8080") && err.contains("connection refused"),
        "{err}"
    );
    drop(pf);

    // Two ports on one WebSocket: the closed one reports, the open one still works.
    let mut pf = api.portforward("buildkitd-0", &[8080, 1234]).await.unwrap();
    let mut stream = pf.take_stream(1234).unwrap();
    let err = timeout(Duration::from_secs(10), pf.take_error(8080).unwrap())
        .await
        .unwrap();
    assert!(err.unwrap().contains("8080"));
    client::hello(&mut stream).await.unwrap();
    assert_eq!(client::echo(stream, MIB).await.unwrap(), MIB);
    timeout(Duration::from_secs(10), pf.join())
        .await
        .unwrap()
        .ok();

    sim.update_pod(NS, "buildkitd-2", |p| p.faults.portforward_forbidden = true);
    let e = api
        .portforward("buildkitd-2", &[1234])
        .await
        .err()
        .expect("an error");
    assert_eq!(api_code(&e), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_bytes_cuts_exec_and_portforward_streams() {
    let sim = Sim::start(cluster()).unwrap();
    sim.update_pod(NS, "buildkitd-0", |p| {
        p.faults.drop_after_bytes = Some(200_000)
    });
    let api = pods(&sim, "admin").await;

    let mut pf = api.portforward("buildkitd-0", &[1234]).await.unwrap();
    let mut stream = pf.take_stream(1234).unwrap();
    client::hello(&mut stream).await.unwrap();
    // Cut mid-echo: the read side sees EOF or the write side a broken pipe.
    let e = timeout(Duration::from_secs(20), client::echo(stream, 4 * MIB))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe
        ),
        "{e}"
    );
    drop(pf);

    let mut proc = api
        .exec("buildkitd-0", ["buildctl", "dial-stdio"], &tunnel_params())
        .await
        .unwrap();
    let mut stdout = proc.stdout().unwrap();
    let stdin = proc.stdin().unwrap();
    let status = proc.take_status().unwrap();
    client::hello(&mut stdout).await.unwrap();
    let e = timeout(
        Duration::from_secs(20),
        client::echo(tokio::io::join(stdout, stdin), 4 * MIB),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe
        ),
        "{e}"
    );
    let status = timeout(Duration::from_secs(10), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
    assert!(sim.stats(NS, "buildkitd-0").connections >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_version_is_1_32() {
    let sim = Sim::start(cluster()).unwrap();
    let kc = Kubeconfig::read_from(sim.kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "32"));
    assert_eq!(info.git_version, "v1.32.0");
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.path == "/version" && r.status == 200 && r.user.as_deref() == Some("admin")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wide_forbidden_faults_and_a_v4_only_server() {
    let sim = Sim::start(cluster()).unwrap();
    let api = pods(&sim, "admin").await;
    sim.set_faults(ServerFaults {
        exec_forbidden: true,
        portforward_forbidden: true,
        ..ServerFaults::default()
    });
    for pod in ["buildkitd-0", "buildkitd-1"] {
        let e = api
            .exec(pod, ["true"], &AttachParams::default())
            .await
            .err()
            .expect("exec refused");
        assert_eq!(api_code(&e), 403);
        assert!(
            e.to_string().contains(&format!(
                "pods \"{pod}\" is forbidden: User \"admin\" cannot create resource \"pods/exec\""
            )),
            "{e}"
        );
        let e = api
            .portforward(pod, &[1234])
            .await
            .err()
            .expect("port-forward refused");
        assert_eq!(api_code(&e), 403);
        assert!(
            e.to_string()
                .contains("cannot create resource \"pods/portforward\""),
            "{e}"
        );
    }

    // An apiserver that only knows exec v4: kube-rs (offering v5, v4) still works, with
    // stdin, stdout and the exit status; it cannot close stdin, so QUIT ends the session.
    sim.set_faults(ServerFaults {
        exec_protocols: vec!["v4.channel.k8s.io".into()],
        ..ServerFaults::default()
    });
    dial_stdio_echo(&api, "buildkitd-1", 8 * MIB).await;
    let ap = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut proc = api
        .exec("buildkitd-0", ["sh", "-c", "exit 4"], &ap)
        .await
        .unwrap();
    let status = timeout(Duration::from_secs(10), proc.take_status().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit_code(&status), Some("4"), "{status:?}");
}
