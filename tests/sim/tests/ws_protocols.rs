//! The sim's WebSocket sessions seen by a raw client (tokio-tungstenite over TLS with a
//! bearer token, no kube-rs in between): exec v4 when only v4 is offered, the
//! `exec_protocols` fault (an apiserver that only knows some subprotocols), pings on
//! exec and port-forward, and the server-wide forbidden faults.

mod common;

use common::{cluster, ws_connect, ws_next, RawWs, NS};
use futures::SinkExt;
use kube_sim::{ServerFaults, Sim};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const V4: &str = "v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";
const SPDY_WS: &str = "SPDY/3.1+portforward.k8s.io";

/// The exec path for `command` in pod `pod` of ns1, with the stream flags in `streams`.
fn exec_path(pod: &str, command: &[&str], streams: &str) -> String {
    let cmd: String = command
        .iter()
        .map(|c| format!("&command={}", c.replace(' ', "+")))
        .collect();
    format!("/api/v1/namespaces/{NS}/pods/{pod}/exec?{streams}{cmd}")
}

fn bin(channel: u8, data: &[u8]) -> Message {
    let mut v = vec![channel];
    v.extend_from_slice(data);
    Message::binary(v)
}

/// Read binary frames until `want` bytes arrived on `channel`; any other frame fails.
async fn read_channel(ws: &mut RawWs, channel: u8, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        match ws_next(ws).await {
            Message::Binary(b) if b.first() == Some(&channel) => got.extend_from_slice(&b[1..]),
            other => panic!("expected channel {channel} data, got {other:?} after {got:?}"),
        }
    }
    got
}

/// The status frame (channel 3) as JSON, then the Close frame: its code.
async fn status_and_close(ws: &mut RawWs) -> (serde_json::Value, Option<CloseCode>) {
    let status = match ws_next(ws).await {
        Message::Binary(b) if b.first() == Some(&3) => serde_json::from_slice(&b[1..]).unwrap(),
        other => panic!("expected the status frame, got {other:?}"),
    };
    let close = match ws_next(ws).await {
        Message::Close(c) => c.map(|c| c.code),
        other => panic!("expected the Close frame, got {other:?}"),
    };
    (status, close)
}

fn exit_code(status: &serde_json::Value) -> Option<&str> {
    status["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")?["message"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_v4_when_the_client_offers_only_v4() {
    let sim = Sim::start(cluster()).unwrap();

    // stdin and stdout frames; v5's close frame [255, 0] means nothing in v4.
    let path = exec_path("buildkitd-0", &["cat"], "stdin=true&stdout=true");
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[V4]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(V4));
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8]));
    ws.send(bin(0, b"hello")).await.unwrap();
    assert_eq!(read_channel(&mut ws, 1, 5).await, b"hello");
    ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
    ws.send(bin(0, b" again")).await.unwrap();
    assert_eq!(read_channel(&mut ws, 1, 6).await, b" again");
    ws.close(None).await.unwrap();

    // The same in v5: [255, 0] closes stdin, cat ends, status Success and Close 1000.
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[V5]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(V5));
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8]));
    ws.send(bin(0, b"hi")).await.unwrap();
    assert_eq!(read_channel(&mut ws, 1, 2).await, b"hi");
    ws.send(Message::binary(vec![255u8, 0])).await.unwrap();
    let (status, close) = status_and_close(&mut ws).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert_eq!(close, Some(CloseCode::Normal));

    // The exit code in v4's status frame.
    let path = exec_path(
        "buildkitd-1",
        &["sh", "-c", "exit 3"],
        "stdout=true&stderr=true",
    );
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[V4]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(V4));
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8]));
    let (status, close) = status_and_close(&mut ws).await;
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(exit_code(&status), Some("3"), "{status}");
    assert_eq!(close, Some(CloseCode::Normal));

    // buildctl dial-stdio over v4: the pod's greeting on stdout, an echo, QUIT ends it.
    let path = exec_path(
        "buildkitd-2",
        &["buildctl", "dial-stdio"],
        "stdin=true&stdout=true",
    );
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[V4]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(V4));
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8]));
    let hello = format!("SIMKIT/1 pod=buildkitd-2 namespace={NS}\n");
    assert_eq!(
        read_channel(&mut ws, 1, hello.len()).await,
        hello.as_bytes()
    );
    ws.send(bin(0, b"ECHO 11\nhello")).await.unwrap();
    ws.send(bin(0, b" world")).await.unwrap();
    assert_eq!(read_channel(&mut ws, 1, 11).await, b"hello world");
    ws.send(bin(0, b"QUIT\n")).await.unwrap();
    let (status, close) = status_and_close(&mut ws).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert_eq!(close, Some(CloseCode::Normal));
    let s = sim.stats(NS, "buildkitd-2");
    assert_eq!((s.connections, s.active), (1, 0), "{s:?}");
    assert_eq!(
        s.bytes_in,
        ("ECHO 11\nhello world".len() + "QUIT\n".len()) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_protocols_fault_limits_the_subprotocols_served() {
    let sim = Sim::start(cluster()).unwrap();
    let path = exec_path("buildkitd-0", &["true"], "stdout=true");
    let chosen = |r: Result<(RawWs, Option<String>), (u16, String)>| match r {
        Ok((_, p)) => p.expect("a subprotocol"),
        Err((code, body)) => panic!("refused: {code} {body}"),
    };
    // Without the fault v5 is preferred, wherever the client lists it.
    assert_eq!(
        chosen(ws_connect(&sim, "admin", &path, &[V4, V5]).await),
        V5
    );

    // An apiserver that only knows v4: kube-rs's offer (v5, v4) gets v4, v5 alone is refused.
    sim.set_faults(ServerFaults {
        exec_protocols: vec![V4.into()],
        ..ServerFaults::default()
    });
    assert_eq!(
        chosen(ws_connect(&sim, "admin", &path, &[V5, V4]).await),
        V4
    );
    let Err((code, body)) = ws_connect(&sim, "admin", &path, &[V5]).await else {
        panic!("a v5-only client must be refused by a v4-only server");
    };
    assert_eq!(code, 400, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 400);
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("none of the offered subprotocols") && message.contains(V4),
        "{message}"
    );

    // And the other way round.
    sim.set_faults(ServerFaults {
        exec_protocols: vec![V5.into()],
        ..ServerFaults::default()
    });
    assert_eq!(
        chosen(ws_connect(&sim, "admin", &path, &[V4, V5]).await),
        V5
    );
    let refused = ws_connect(&sim, "admin", &path, &[V4]).await.err();
    assert_eq!(refused.map(|(code, _)| code), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_portforward_answer_websocket_pings() {
    let sim = Sim::start(cluster()).unwrap();

    // Exec (v5 and v4), idle: the Pong comes back with the Ping's payload, and the
    // session still works afterwards.
    for protocol in [V5, V4] {
        let path = exec_path("buildkitd-0", &["cat"], "stdin=true&stdout=true");
        let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[protocol]).await.unwrap();
        assert_eq!(chosen.as_deref(), Some(protocol));
        assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8]));
        ws.send(Message::Ping(b"exec-ping".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            ws_next(&mut ws).await,
            Message::Pong(b"exec-ping".to_vec().into()),
            "{protocol}"
        );
        ws.send(bin(0, b"after")).await.unwrap();
        assert_eq!(read_channel(&mut ws, 1, 5).await, b"after");
        ws.send(Message::Ping(b"again".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            ws_next(&mut ws).await,
            Message::Pong(b"again".to_vec().into())
        );
        ws.close(None).await.unwrap();
    }

    // Port-forward over WebSocket v4 (kube-rs): after the port prefixes and the pod's
    // greeting the stream is idle, so the next message must be the Pong.
    let path = format!("/api/v1/namespaces/{NS}/pods/buildkitd-1/portforward?ports=1234");
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[V4]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(V4));
    let prefixes = [ws_next(&mut ws).await, ws_next(&mut ws).await];
    assert_eq!(
        prefixes,
        [
            Message::binary(vec![0u8, 0xd2, 0x04]),
            Message::binary(vec![1u8, 0xd2, 0x04])
        ]
    );
    let hello = format!("SIMKIT/1 pod=buildkitd-1 namespace={NS}\n");
    assert_eq!(
        read_channel(&mut ws, 0, hello.len()).await,
        hello.as_bytes()
    );
    ws.send(Message::Ping(b"pf-ping".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        Message::Pong(b"pf-ping".to_vec().into())
    );
    ws.send(bin(0, b"ECHO 2\nok")).await.unwrap();
    assert_eq!(read_channel(&mut ws, 0, 2).await, b"ok");
    ws.close(None).await.unwrap();

    // kubectl's SPDY-over-WebSocket tunnel: WebSocket pings are answered there too.
    let path = format!("/api/v1/namespaces/{NS}/pods/buildkitd-1/portforward");
    let (mut ws, chosen) = ws_connect(&sim, "admin", &path, &[SPDY_WS]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(SPDY_WS));
    ws.send(Message::Ping(b"spdy-ws".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut ws).await,
        Message::Pong(b"spdy-ws".to_vec().into())
    );
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wide_forbidden_faults_answer_the_per_pod_403() {
    let sim = Sim::start(cluster()).unwrap();
    let exec = exec_path("buildkitd-0", &["true"], "stdout=true");
    let pf = format!("/api/v1/namespaces/{NS}/pods/buildkitd-0/portforward?ports=1234");
    let refusal = |r: Result<(RawWs, Option<String>), (u16, String)>| -> (u16, serde_json::Value) {
        match r {
            Ok(_) => panic!("the upgrade should have been refused"),
            Err((code, body)) => (code, serde_json::from_str(&body).unwrap()),
        }
    };

    sim.set_faults(ServerFaults {
        exec_forbidden: true,
        ..ServerFaults::default()
    });
    let server_exec = refusal(ws_connect(&sim, "admin", &exec, &[V5, V4]).await);
    // Port-forward is not affected by the exec fault.
    assert!(ws_connect(&sim, "admin", &pf, &[V4]).await.is_ok());
    sim.set_faults(ServerFaults {
        portforward_forbidden: true,
        ..ServerFaults::default()
    });
    let server_pf = refusal(ws_connect(&sim, "admin", &pf, &[V4]).await);
    assert!(ws_connect(&sim, "admin", &exec, &[V5]).await.is_ok());
    // Every pod, not only one: another pod and kubectl's SPDY-over-WebSocket form too.
    let pf2 = format!("/api/v1/namespaces/{NS}/pods/buildkitd-2/portforward");
    assert_eq!(
        refusal(ws_connect(&sim, "admin", &pf2, &[SPDY_WS]).await).0,
        403
    );

    sim.set_faults(ServerFaults::default());
    sim.update_pod(NS, "buildkitd-0", |p| {
        p.faults.exec_forbidden = true;
        p.faults.portforward_forbidden = true;
    });
    let pod_exec = refusal(ws_connect(&sim, "admin", &exec, &[V5, V4]).await);
    let pod_pf = refusal(ws_connect(&sim, "admin", &pf, &[V4]).await);

    assert_eq!(server_exec, pod_exec);
    assert_eq!(server_pf, pod_pf);
    assert_eq!(server_exec.0, 403);
    let status = &server_exec.1;
    assert_eq!(
        (&status["kind"], &status["reason"], &status["code"]),
        (&"Status".into(), &"Forbidden".into(), &403.into())
    );
    assert_eq!(
        status["message"],
        format!(
            "pods \"buildkitd-0\" is forbidden: User \"admin\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"{NS}\""
        )
    );
    assert!(
        server_pf.1["message"]
            .as_str()
            .unwrap()
            .contains("cannot create resource \"pods/portforward\""),
        "{}",
        server_pf.1
    );
}
