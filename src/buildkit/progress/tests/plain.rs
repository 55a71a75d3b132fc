use std::time::{Duration, Instant};

use super::super::model::ProgressModel;
use super::super::plain::PlainRenderer;
use super::super::{run, ProgressMode};
use super::*;

/// Plain output of `stream`, flushing after each message as if `gap` passed between
/// them, then everything at the end.
fn plain_of(stream: &[StatusResponse], gap: Duration) -> String {
    let mut model = ProgressModel::new();
    let mut plain = PlainRenderer::new();
    let mut out = Vec::new();
    let mut now = Instant::now();
    for resp in stream {
        plain.observe(&model.apply(resp), now);
        plain.flush(&model, now, false, &mut out).unwrap();
        now += gap;
    }
    plain.observe(&model.finish(), now);
    plain.flush(&model, now, true, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_failing_build_reads_like_buildctl() {
    let got = plain_of(&failing_build(), Duration::from_millis(100));
    let want = format!(
        "#1 [internal] load build definition from Dockerfile\n\
         #1 transferring dockerfile: 32B 32B 0.0s\n\
         #1 transferring dockerfile: 32B 32B 0.1s done\n\
         #1 DONE 0.1s\n\
         \n\
         #2 [internal] load .dockerignore\n\
         #2 DONE 0.0s\n\
         \n\
         #3 [1/2] FROM docker.io/local/busybox:1\n\
         #3 CACHED\n\
         \n\
         #4 {RUN_NAME}\n\
         #4 0.212 building\n\
         #4 0.212 half\n\
         #4 0.400 line\n\
         #4 ERROR: {RUN_ERROR}\n"
    );
    assert_eq!(got, want);
}

#[tokio::test]
async fn run_in_plain_mode_ends_with_the_failure_block() {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let out = SharedBuf::default();
    let task = tokio::spawn(run(ProgressMode::Plain, rx, Box::new(out.clone())));
    for resp in failing_build() {
        tx.send(resp).await.unwrap();
    }
    drop(tx);
    let summary = task.await.unwrap();
    let text = out.text();
    assert!(
        text.starts_with("#1 [internal] load build definition from Dockerfile\n"),
        "{text}"
    );
    let tail = format!(
        "#4 ERROR: {RUN_ERROR}\n------\n > {RUN_NAME}:\n0.212 building\n0.212 half\n0.400 line\n------\n"
    );
    assert!(text.ends_with(&tail), "{text}");
    assert_eq!(summary.failed.unwrap().name, RUN_NAME);
    // Every line but the failure block is a numbered one, or a blank between blocks.
    let body = &text[..text.len() - tail.len() + format!("#4 ERROR: {RUN_ERROR}\n").len()];
    for line in body.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "{line:?} in {text}"
        );
    }
}

#[test]
fn a_step_that_says_nothing_shows_while_it_runs() {
    let stream: Vec<_> = [Resp::new().started(RUN, "[2/2] RUN sleep 5", 0)]
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(plain_of(&stream, Duration::ZERO), "#1 [2/2] RUN sleep 5\n");
}

#[test]
fn warnings_and_canceled_steps() {
    let stream: Vec<_> = [
        Resp::new().started(RUN, "[2/2] RUN sleep 60", 0),
        Resp::new().warn(RUN, "JSONArgsRecommended: JSON arguments recommended"),
        Resp::new().failed(RUN, "[2/2] RUN sleep 60", 0, 900, "context canceled"),
    ]
    .into_iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(
        plain_of(&stream, Duration::ZERO),
        "#1 [2/2] RUN sleep 60\n\
         #1 WARN: JSONArgsRecommended: JSON arguments recommended\n\
         #1 CANCELED\n"
    );
}

#[test]
fn concurrent_steps_come_out_in_blocks() {
    let a = "[stage-a 2/2] RUN make a";
    let b = "[stage-b 2/2] RUN make b";
    let stream: Vec<_> = [
        Resp::new()
            .started(FROM, a, 0)
            .started(RUN, b, 0)
            .log(FROM, 100, "a1\n")
            .log(RUN, 100, "b1\n"),
        Resp::new().log(FROM, 200, "a2\n").log(RUN, 200, "b2\n"),
        Resp::new().done(FROM, a, 0, 300).log(RUN, 300, "b3\n"),
        Resp::new().done(RUN, b, 0, 400),
    ]
    .into_iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(
        plain_of(&stream, Duration::from_millis(100)),
        format!(
            "#1 {a}\n#1 0.100 a1\n#1 0.200 a2\n#1 DONE 0.3s\n\
             \n#2 {b}\n#2 0.100 b1\n#2 0.200 b2\n#2 0.300 b3\n#2 DONE 0.4s\n"
        )
    );
}

#[test]
fn a_step_kept_waiting_gets_its_turn_and_the_first_is_marked_unfinished() {
    let a = "[stage-a 2/2] RUN make a";
    let b = "[stage-b 2/2] RUN make b";
    // a speaks every half second; b's one line waits its five-second turn.
    let mut stream = vec![
        Resp::new()
            .started(FROM, a, 0)
            .started(RUN, b, 0)
            .log(FROM, 0, "a0\n"),
        Resp::new().log(RUN, 100, "b1\n").log(FROM, 500, "a1\n"),
    ];
    for i in 2..14 {
        stream.push(Resp::new().log(FROM, i * 500, &format!("a{i}\n")));
    }
    stream.push(Resp::new().done(FROM, a, 0, 7000).done(RUN, b, 0, 7000));
    let stream: Vec<_> = stream.into_iter().map(|r| r.0).collect();
    let got = plain_of(&stream, Duration::from_millis(500));
    let a_lines: String = (0..11)
        .map(|i| {
            format!(
                "#1 {} a{i}\n",
                super::super::units::log_offset(i as f64 / 2.0)
            )
        })
        .collect();
    assert_eq!(
        got,
        format!(
            "#1 {a}\n{a_lines}#1 ...\n\
             \n#2 {b}\n#2 0.100 b1\n#2 ...\n\
             \n#1 {a}\n#1 5.500 a11\n#1 6.000 a12\n#1 6.500 a13\n#1 DONE 7.0s\n\
             \n#2 {b}\n#2 DONE 7.0s\n"
        )
    );
}

#[test]
fn a_transfer_is_reprinted_only_when_it_moved() {
    let id = "sha256:aaaa 1.00MB / 10.00MB";
    let stream: Vec<_> = [
        Resp::new().started(RUN, "pull", 0),
        Resp::new().task(RUN, id, (1_000_000, 10_000_000), 100, 0, None),
        Resp::new().task(RUN, id, (1_100_000, 10_000_000), 200, 0, None),
        Resp::new().task(RUN, id, (2_000_000, 10_000_000), 300, 0, None),
        Resp::new().task(RUN, id, (2_100_000, 10_000_000), 5400, 0, None),
        Resp::new().task(RUN, id, (10_000_000, 10_000_000), 5500, 0, Some(5500)),
    ]
    .into_iter()
    .map(|r| r.0)
    .collect();
    let got = plain_of(&stream, Duration::from_millis(100));
    let shown: Vec<&str> = got.lines().skip(1).collect();
    assert_eq!(
        shown,
        [
            format!("#1 {id} 1.00MB / 10.00MB 0.1s"),
            format!("#1 {id} 2.00MB / 10.00MB 0.3s"),
            format!("#1 {id} 2.10MB / 10.00MB 5.4s"),
            format!("#1 {id} 10.00MB / 10.00MB 5.5s done"),
        ]
    );
}

/// A writer whose bytes the test reads after `run` returned.
#[derive(Clone, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
