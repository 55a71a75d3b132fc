//! The channel against a plain h2 server that behaves like buildkitd's session
//! stream: a burst of tiny DATA frames the client reads only a moment later.

use std::time::Duration;

use bytes::Bytes;
use tonic::codegen::http;
use tonic::codegen::Body as _;
use tower::ServiceExt;

use super::connect;

/// Frames in the burst: more than a 10,000-file context's REQs.
const FRAMES: usize = 20_000;

/// Serve one request: answer with `FRAMES` DATA frames of 8 bytes, then end.
async fn tiny_frame_server(io: tokio::io::DuplexStream) {
    let mut conn = h2::server::handshake(io).await.expect("h2 handshake");
    let (_req, mut respond) = conn.accept().await.expect("a request").expect("request ok");
    // Keep the connection driven while we send and the client reads.
    tokio::spawn(async move { while conn.accept().await.is_some() {} });
    let response = http::Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut send = respond.send_response(response, false).expect("headers");
    for i in 0..FRAMES {
        send.reserve_capacity(8);
        while send.capacity() < 8 {
            std::future::poll_fn(|cx| send.poll_capacity(cx))
                .await
                .expect("capacity")
                .expect("capacity ok");
        }
        send.send_data(Bytes::from((i as u64).to_le_bytes().to_vec()), false)
            .expect("data");
    }
    send.send_data(Bytes::new(), true).expect("end");
}

#[tokio::test]
async fn a_burst_of_tiny_frames_read_late_does_not_close_the_connection() {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(tiny_frame_server(theirs));
    let channel = connect(ours).await.expect("channel");
    let request = http::Request::builder()
        .method("POST")
        .uri("http://buildkitd/moby.buildkit.v1.Control/Session")
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = channel.oneshot(request).await.expect("response");
    let mut body = response.into_body();
    // Our relay is busy elsewhere for a moment: the burst waits unread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bytes = 0usize;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break,
            Some(Ok(f)) => bytes += f.data_ref().map(|d| d.len()).unwrap_or(0),
            Some(Err(e)) => panic!("after {bytes} bytes the connection failed: {e}"),
        }
    }
    assert_eq!(bytes, FRAMES * 8);
    server.await.unwrap();
}
