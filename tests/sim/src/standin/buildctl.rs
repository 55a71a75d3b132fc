//! The stand-in `buildctl`: real buildctl's command line (v0.32, urfave/cli v3
//! rules), talking "simkit" (see [`crate::buildkitd`]) instead of gRPC.
//!
//! Environment (all optional):
//! - `SIM_BUILDCTL_RECORD=FILE`: append one JSON line per invocation (see [`Record`]).
//! - `SIM_BUILDCTL_PAYLOAD=N` (bytes, K/M/G suffixes allowed; default 1048576): the
//!   build context `build` ECHOes through the buildkitd and verifies.
//! - `SIM_BUILDCTL_IMAGE_BYTES=N` (default 65536): the layer size of exported images,
//!   streamed from the buildkitd with SOURCE.
//! - `SIM_BUILDCTL_EXIT=N`: after parsing, record and exit N without connecting.
//! - `SIM_BUILDCTL_SLEEP_MS=N`: `build` sleeps that long after the greeting.
//! - `SIM_BUILDCTL_SIGNAL_FILE=FILE`: on SIGINT/SIGTERM append `SIGINT`/`SIGTERM` and
//!   a newline to FILE, record, and exit 130/143.
//! - `SIM_BUILDCTL_DEFAULT_TIMEOUT=SECONDS`: what `--timeout` is when not given (real
//!   buildctl: 5). The integration tests set it high: on a loaded CI machine a
//!   failover's two exec dials can pass 5 s, and they test behaviour, not latency.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;

use super::csv;
use super::image::{ArchiveKind, ImagePlan};
use super::record::{self, isatty, StreamStat, Tracked};
use super::urfave::{self, Command, Flag, Kind, Outcome, Parsed};
use crate::buildkitd::{self, Identity};

/// What `--version` reports.
pub const VERSION_LINE: &str = "buildctl github.com/moby/buildkit v0.32.2-sim";
/// buildctl's default address when neither --addr nor $BUILDKIT_HOST is given.
pub const DEFAULT_ADDR: &str = "unix:///run/buildkit/buildkitd.sock";
const DEFAULT_PAYLOAD: u64 = 1 << 20;
const DEFAULT_IMAGE_BYTES: u64 = 64 * 1024;

fn f(names: &'static [&'static str], kind: Kind, usage: &'static str) -> Flag {
    Flag::new(names, kind, usage)
}

/// The command tree of real buildctl v0.32 (the parts the stand-in knows).
pub fn command_tree() -> Command {
    let mut root = Command::new("buildctl", "build utility");
    root.flags = vec![
        f(&["debug"], Kind::Bool, "enable debug output in logs"),
        f(&["addr"], Kind::Str, "buildkitd address"),
        f(&["log-format"], Kind::Str, "log formatter: json or text"),
        f(
            &["tlsservername"],
            Kind::Str,
            "buildkitd server name for certificate validation",
        ),
        f(&["tlscacert"], Kind::Str, "CA certificate for validation"),
        f(&["tlscert"], Kind::Str, "client certificate"),
        f(&["tlskey"], Kind::Str, "client key"),
        f(
            &["tlsdir"],
            Kind::Str,
            "directory containing CA certificate, client certificate, and client key",
        ),
        f(
            &["timeout"],
            Kind::Int,
            "timeout backend connection after value seconds",
        ),
        f(
            &["wait"],
            Kind::Bool,
            "block RPCs until the connection becomes available",
        ),
    ];
    let listing = || {
        vec![
            f(&["filter", "f"], Kind::Slice, "Filter records"),
            f(&["verbose", "v"], Kind::Bool, "Verbose output"),
            f(
                &["format"],
                Kind::Str,
                "Format the output using the given Go template",
            ),
        ]
    };
    let mut du = Command::new("du", "disk usage");
    du.flags = listing();
    let mut prune = Command::new("prune", "clean up build cache");
    prune.flags = vec![
        f(
            &["keep-duration"],
            Kind::Duration,
            "Keep data newer than this limit",
        ),
        f(
            &["keep-storage"],
            Kind::Float,
            "Keep data below this limit (in MB)",
        ),
        f(
            &["keep-storage-min"],
            Kind::Float,
            "Always allow data above this limit (in MB)",
        ),
        f(
            &["free-storage"],
            Kind::Float,
            "Keep free data below this limit (in MB)",
        ),
        f(&["all"], Kind::Bool, "Include internal/frontend references"),
    ];
    prune.flags.extend(listing());
    let mut build = Command::new("build", "build");
    build.aliases = &["b"];
    build.flags = vec![
        f(
            &["output", "o"],
            Kind::Slice,
            "Define exports for build result",
        ),
        f(
            &["progress"],
            Kind::Str,
            "Set type of progress (auto, plain, tty, rawjson)",
        ),
        f(
            &["trace"],
            Kind::Str,
            "Path to trace file. Defaults to no tracing.",
        ),
        f(
            &["local"],
            Kind::Slice,
            "Allow build access to the local directory",
        ),
        f(
            &["oci-layout"],
            Kind::Slice,
            "Allow build access to the local OCI layout",
        ),
        f(&["frontend"], Kind::Str, "Define frontend used for build"),
        f(&["opt"], Kind::Slice, "Define custom options for frontend"),
        f(
            &["no-cache"],
            Kind::Bool,
            "Disable cache for all the vertices",
        ),
        f(&["export-cache"], Kind::Slice, "Export build cache"),
        f(&["import-cache"], Kind::Slice, "Import build cache"),
        f(
            &["secret"],
            Kind::Slice,
            "Secret value exposed to the build. Format id=secretname,src=filepath",
        ),
        f(
            &["allow"],
            Kind::Slice,
            "Allow extra privileged entitlement",
        ),
        f(
            &["ssh"],
            Kind::Slice,
            "Allow forwarding SSH agent or a raw Unix socket to the builder",
        ),
        f(
            &["metadata-file"],
            Kind::Str,
            "Output build metadata (e.g., image digest) to a file as JSON",
        ),
        f(
            &["source-policy-file"],
            Kind::Str,
            "Read source policy file from a JSON file",
        ),
        f(
            &["proxy-network"],
            Kind::Bool,
            "Run build with proxy network enforcement",
        ),
        f(&["ref-file"], Kind::Str, "Write build ref to a file"),
        f(
            &["registry-auth-tlscontext"],
            Kind::Slice,
            "Overwrite TLS configuration when authenticating with registries",
        ),
        f(
            &["debug-json-cache-metrics"],
            Kind::Str,
            "Where to output json cache metrics",
        ),
    ];
    let mut workers = Command::new("workers", "list workers");
    workers.flags = listing();
    let mut debug = Command::new("debug", "debug utilities");
    debug.commands = vec![workers];
    for (name, usage) in [
        ("dump-llb", "dump LLB in human-readable format"),
        ("dump-metadata", "dump the metadata of a snapshot"),
        ("info", "display internal information"),
        ("monitor", "display build events"),
        ("logs", "display build logs"),
        ("ctl", "control build records"),
        ("get", "retrieve a blob from contentstore"),
        ("histories", "list build records"),
    ] {
        debug.commands.push(Command::new(name, usage));
    }
    let mut dial = Command::new(
        "dial-stdio",
        "Proxy the stdio stream to the daemon connection. Should not be invoked manually.",
    );
    dial.hidden = true;
    let mut help = Command::new("help", "Shows a list of commands or help for one command");
    help.aliases = &["h"];
    root.commands = vec![
        du,
        prune,
        Command::new("prune-histories", "clean up build histories"),
        build,
        debug,
        dial,
        help,
    ];
    root
}

/// Mutable facts about the invocation, for the record.
#[derive(Default)]
struct State {
    served_by: Option<Identity>,
    payload_bytes: u64,
}

struct Ctx {
    state: Arc<Mutex<State>>,
    stdout: Arc<Mutex<StreamStat>>,
}

impl Ctx {
    /// Write to stdout synchronously, counting and hashing.
    fn emit(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        let mut st = self.stdout.lock().unwrap();
        st.bytes += text.len() as u64;
        sha2::Digest::update(&mut st.hasher, text.as_bytes());
    }
    fn tracked_stdout(&self) -> Tracked<tokio::io::Stdout> {
        Tracked::new(tokio::io::stdout(), self.stdout.clone())
    }
}

/// Entry point of the `buildctl` binary.
pub fn main() -> ! {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(argv));
    // Exit without dropping the runtime: a blocking stdin read must not hold us.
    std::process::exit(code)
}

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            record::parse_size(&v).ok_or_else(|| format!("invalid {name}={v:?}: want a byte count"))
        }
        _ => Ok(default),
    }
}

async fn run(argv: Vec<String>) -> i32 {
    let ctx = Ctx {
        state: Arc::new(Mutex::new(State::default())),
        stdout: Arc::new(Mutex::new(StreamStat::default())),
    };
    let tree = command_tree();
    let parsed = urfave::parse("buildctl", &tree, &argv);
    let addr = match parsed.str("addr") {
        Some(a) => a.to_string(),
        None => match std::env::var("BUILDKIT_HOST") {
            Ok(h) if !h.is_empty() => h,
            _ => DEFAULT_ADDR.to_string(),
        },
    };
    let mut signal: Option<&str> = None;
    let (code, error): (i32, Option<String>) = match &parsed.outcome {
        Outcome::Usage { msg, help } => {
            eprint!("Incorrect Usage: {msg}\n\n");
            ctx.emit(help);
            (1, Some(msg.clone()))
        }
        Outcome::Help(text) => {
            ctx.emit(text);
            (0, None)
        }
        Outcome::Version => {
            ctx.emit(&format!("{VERSION_LINE}\n"));
            (0, None)
        }
        Outcome::NoHelpTopic(t) => (3, Some(format!("No help topic for '{t}'"))),
        Outcome::Run => match std::env::var("SIM_BUILDCTL_EXIT") {
            Ok(v) if !v.trim().is_empty() => {
                let n = v.trim().parse::<i32>().unwrap_or(1);
                (
                    n,
                    (n != 0).then(|| format!("simulated exit status {n} (SIM_BUILDCTL_EXIT)")),
                )
            }
            _ => {
                let (c, e, s) = with_signals(dispatch(&parsed, &ctx, &addr)).await;
                signal = s;
                (c, e)
            }
        },
    };
    write_record(&argv, &addr, &ctx, code, error.as_deref(), signal);
    if let Some(e) = &error {
        if matches!(parsed.outcome, Outcome::NoHelpTopic(_)) {
            eprintln!("{e}");
        } else {
            eprintln!("error: {e}");
        }
    }
    code
}

fn write_record(
    argv: &[String],
    addr: &str,
    ctx: &Ctx,
    code: i32,
    error: Option<&str>,
    signal: Option<&str>,
) {
    if std::env::var_os("SIM_BUILDCTL_RECORD").is_none() {
        return;
    }
    let st = ctx.state.lock().unwrap();
    let out = ctx.stdout.lock().unwrap();
    let rec = serde_json::json!({
        "argv": argv,
        "cwd": record::cwd_string(),
        "env": record::env_snapshot(&["BUILDKIT_HOST"], &["SIM_", "DOCKER_", "BUILDKIT_"]),
        "addr": addr,
        "served_by": st.served_by.as_ref().map(|i| serde_json::json!({"pod": i.pod, "namespace": i.namespace})),
        "payload_bytes": st.payload_bytes,
        "stdout_bytes": out.bytes,
        "stdout_sha256": out.sha256(),
        "exit_code": code,
        "error": error,
        "signal": signal,
    });
    record::append_record("SIM_BUILDCTL_RECORD", &rec);
}

/// Run `fut`, or stop at SIGINT/SIGTERM: append the signal's name to
/// $SIM_BUILDCTL_SIGNAL_FILE and report exit 130/143.
async fn with_signals<F>(fut: F) -> (i32, Option<String>, Option<&'static str>)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return match fut.await {
            Ok(()) => (0, None, None),
            Err(e) => (1, Some(e), None),
        };
    };
    let (name, code) = tokio::select! {
        r = fut => return match r {
            Ok(()) => (0, None, None),
            Err(e) => (1, Some(e), None),
        },
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    };
    if let Some(path) = std::env::var_os("SIM_BUILDCTL_SIGNAL_FILE") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{name}\n").as_bytes()));
    }
    (code, Some(format!("interrupted by {name}")), Some(name))
}

async fn dispatch(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    // The root's Before hook.
    match p.str("log-format").unwrap_or("text") {
        "text" | "json" | "" => {}
        other => return Err(format!("unsupported log type {other:?}")),
    }
    match p.path.as_slice() {
        ["build"] => build(p, ctx, addr).await,
        ["debug", "workers"] => workers(p, ctx, addr).await,
        ["du"] => du(p, ctx, addr).await,
        ["prune"] => prune(p, ctx, addr).await,
        ["dial-stdio"] => dial_stdio(p, ctx, addr).await,
        other => Err(format!(
            "the stand-in buildctl does not implement {:?}",
            other.join(" ")
        )),
    }
}

// ---------------------------------------------------------------- errors ---

/// An OS error's text the way Go prints it ("no such file or directory").
fn errno_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

fn go_path_err(op: &str, path: &str, e: &std::io::Error) -> String {
    format!("{op} {path}: {}", errno_text(e))
}

// ------------------------------------------------------------ addresses ---

/// A buildkitd address the stand-in can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(String),
    Tcp(String),
    KubePod {
        context: String,
        namespace: String,
        pod: String,
        container: String,
    },
}

fn valid_kube_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == b'-' || b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse an address like buildkit's client does.
pub fn parse_address(addr: &str) -> Result<Address, String> {
    let Some((scheme, rest)) = addr.split_once("://") else {
        return Err(format!("invalid address {addr}"));
    };
    match scheme {
        "unix" => Ok(Address::Unix(rest.to_string())),
        "tcp" => Ok(Address::Tcp(rest.trim_end_matches('/').to_string())),
        "kube-pod" => {
            let (before_frag, _) = rest.split_once('#').unwrap_or((rest, ""));
            let (hier, query) = before_frag.split_once('?').unwrap_or((before_frag, ""));
            let authority = hier.split('/').next().unwrap_or("");
            let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
            let host = if let Some(h) = host.strip_prefix('[') {
                h.split(']').next().unwrap_or("")
            } else {
                host.split(':').next().unwrap_or("")
            };
            let mut q: BTreeMap<String, String> = BTreeMap::new();
            for pair in query.split('&') {
                if pair.is_empty() || pair.contains(';') {
                    continue;
                }
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                q.entry(percent_decode(k)).or_insert_with(|| percent_decode(v));
            }
            let get = |k: &str| q.get(k).cloned().unwrap_or_default();
            let (context, namespace, container) = (get("context"), get("namespace"), get("container"));
            let pod = host.to_string();
            if !namespace.is_empty() && !valid_kube_identifier(&namespace) {
                return Err(format!("unsupported namespace name: {namespace:?}"));
            }
            if pod.is_empty() {
                return Err("url lacks pod name".into());
            }
            if !valid_kube_identifier(&pod) {
                return Err(format!("unsupported pod name: {pod:?}"));
            }
            if !container.is_empty() && !valid_kube_identifier(&container) {
                return Err(format!("unsupported container name: {container:?}"));
            }
            Ok(Address::KubePod {
                context,
                namespace,
                pod,
                container,
            })
        }
        "docker-container" | "podman-container" | "nerdctl-container" | "ssh" | "npipe" => Err(format!(
            "the stand-in buildctl cannot reach {scheme}:// addresses (only unix://, tcp:// and kube-pod://)"
        )),
        _ => Err(format!("invalid address {addr}: unsupported scheme {scheme:?}")),
    }
}

/// The kubectl arguments buildkit's kube-pod connection helper uses.
pub fn kube_pod_argv(context: &str, namespace: &str, pod: &str, container: &str) -> Vec<String> {
    vec![
        format!("--context={context}"),
        format!("--namespace={namespace}"),
        "exec".into(),
        format!("--container={container}"),
        "-i".into(),
        pod.into(),
        "--".into(),
        "buildctl".into(),
        "dial-stdio".into(),
    ]
}

// ----------------------------------------------------------- connection ---

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to a (simulated) buildkitd.
struct Conn {
    io: Box<dyn Io>,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

impl Conn {
    /// Give a kubectl child a moment to finish, then describe what it said.
    async fn helper_report(&mut self) -> String {
        let Some(child) = self.child.as_mut() else {
            return String::new();
        };
        let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        let err = String::from_utf8_lossy(&self.stderr.lock().unwrap())
            .trim()
            .to_string();
        let mut s = String::new();
        if let Ok(Ok(st)) = status {
            s.push_str(&format!(" (kubectl exited: {st})"));
        }
        if !err.is_empty() {
            s.push_str(&format!(" (kubectl stderr: {err})"));
        }
        s
    }

    /// Describe `e`, adding what kubectl said when it is behind the connection.
    async fn fail(&mut self, what: &str, e: std::io::Error) -> String {
        let extra = self.helper_report().await;
        format!("{what}: {}{extra}", errno_text(&e))
    }

    /// Say goodbye and wait for a kubectl child to end.
    async fn close(mut self, quit: bool) {
        if quit {
            let _ = self.io.write_all(b"QUIT\n").await;
        }
        let _ = self.io.shutdown().await;
        drop(self.io);
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

async fn dial_once(addr: &Address, debug: bool) -> Result<Conn, String> {
    let plain = |io: Box<dyn Io>| Conn {
        io,
        child: None,
        stderr: Arc::new(Mutex::new(Vec::new())),
        stderr_task: None,
    };
    match addr {
        Address::Unix(path) => tokio::net::UnixStream::connect(path)
            .await
            .map(|s| plain(Box::new(s)))
            .map_err(|e| format!("dial unix {path}: connect: {}", errno_text(&e))),
        Address::Tcp(hostport) => tokio::net::TcpStream::connect(hostport.as_str())
            .await
            .map(|s| {
                let _ = s.set_nodelay(true);
                plain(Box::new(s))
            })
            .map_err(|e| format!("dial tcp {hostport}: connect: {}", errno_text(&e))),
        Address::KubePod {
            context,
            namespace,
            pod,
            container,
        } => {
            let args = kube_pod_argv(context, namespace, pod, container);
            if debug {
                eprintln!(
                    "level=debug msg=\"kube-pod: running kubectl {}\"",
                    args.join(" ")
                );
            }
            let mut child = tokio::process::Command::new("kubectl")
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("exec: \"kubectl\": {}", errno_text(&e)))?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut stderr = child.stderr.take().expect("piped stderr");
            let buf = Arc::new(Mutex::new(Vec::new()));
            let b2 = buf.clone();
            let task = tokio::spawn(async move {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    if debug {
                        let _ = std::io::stderr().write_all(&chunk[..n]);
                    }
                    let mut b = b2.lock().unwrap();
                    if b.len() < 64 * 1024 {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            });
            Ok(Conn {
                io: Box::new(tokio::io::join(stdout, stdin)),
                child: Some(child),
                stderr: buf,
                stderr_task: Some(task),
            })
        }
    }
}

/// Connect and read the greeting, within --timeout (retrying until then with --wait).
async fn connect(opts: &ClientOpts) -> Result<(Conn, Identity), String> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let mut c = dial_once(&opts.address, opts.debug).await?;
            match buildkitd::client::hello(&mut c.io).await {
                Ok(id) => Ok((c, id)),
                Err(e) => Err(c.fail("failed to read the buildkitd greeting", e).await),
            }
        };
        let res = match opts.timeout {
            Some(t) => {
                let left = t.saturating_sub(start.elapsed());
                match tokio::time::timeout(left, attempt).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "timed out after {}s waiting for buildkitd: context deadline exceeded",
                        t.as_secs()
                    )),
                }
            }
            None => attempt.await,
        };
        match res {
            Ok(ok) => return Ok(ok),
            Err(e) => {
                let expired = opts
                    .timeout
                    .is_some_and(|t| start.elapsed() + Duration::from_millis(100) >= t);
                if !opts.wait || expired {
                    return Err(format!(
                        "failed to connect to buildkitd at {}: {e}",
                        opts.addr
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What buildctl's ResolveClient works out from the global flags.
struct ClientOpts {
    addr: String,
    address: Address,
    timeout: Option<Duration>,
    wait: bool,
    debug: bool,
}

fn resolve_client(p: &Parsed, addr: &str) -> Result<ClientOpts, String> {
    let (ca, cert, key) = (
        p.str("tlscacert").unwrap_or(""),
        p.str("tlscert").unwrap_or(""),
        p.str("tlskey").unwrap_or(""),
    );
    let tlsdir = p.str("tlsdir").unwrap_or("");
    let files: Vec<String> = if !tlsdir.is_empty() {
        if !ca.is_empty() || !cert.is_empty() || !key.is_empty() {
            return Err(
                "cannot specify tlsdir and tlscacert/tlscert/tlskey at the same time".into(),
            );
        }
        let mut v = Vec::new();
        for (a, b) in [
            ("ca.pem", "ca.crt"),
            ("cert.pem", "tls.crt"),
            ("key.pem", "tls.key"),
        ] {
            let found = [a, b]
                .iter()
                .map(|n| Path::new(tlsdir).join(n))
                .find(|p| p.exists());
            match found {
                Some(f) => v.push(f.to_string_lossy().into_owned()),
                None => {
                    return Err(format!(
                        "directory did not contain one of the needed files: {a} or {b}"
                    ))
                }
            }
        }
        v
    } else {
        [ca, cert, key]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    };
    for file in &files {
        std::fs::metadata(file)
            .map_err(|e| format!("failed to read tls file: {}", go_path_err("open", file, &e)))?;
    }
    let address = parse_address(addr)?;
    let secs = p.int("timeout").unwrap_or_else(default_timeout);
    Ok(ClientOpts {
        addr: addr.to_string(),
        address,
        timeout: (secs > 0).then(|| Duration::from_secs(secs as u64)),
        wait: p.bool("wait"),
        debug: p.bool("debug"),
    })
}

/// buildctl's `--timeout` when none is given: 5, unless SIM_BUILDCTL_DEFAULT_TIMEOUT says.
fn default_timeout() -> i64 {
    std::env::var("SIM_BUILDCTL_DEFAULT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

// --------------------------------------------------------------- progress ---

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Json,
    Quiet,
}

struct Progress {
    mode: Mode,
    next: u32,
    start: Instant,
}

impl Progress {
    fn new(p: &Parsed) -> Result<Progress, String> {
        let mut mode = p.str("progress").unwrap_or("auto").to_string();
        if mode == "auto" {
            if let Ok(v) = std::env::var("BUILDKIT_PROGRESS") {
                if !v.is_empty() {
                    mode = v;
                }
            }
        }
        let mode = match mode.as_str() {
            "auto" | "" | "plain" => Mode::Plain,
            "tty" => {
                if !isatty(2) {
                    return Err("failed to get console: provided file is not a console".into());
                }
                Mode::Plain
            }
            "rawjson" => Mode::Json,
            "quiet" => Mode::Quiet,
            other => return Err(format!("invalid progress mode {other}")),
        };
        Ok(Progress {
            mode,
            next: 1,
            start: Instant::now(),
        })
    }

    fn line(&self, n: u32, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("#{n} {text}"),
            Mode::Json => eprintln!(
                "{}",
                serde_json::json!({"vertexes": [{"digest": format!("simkit-{n}"), "name": text}]})
            ),
        }
    }

    fn step(&mut self, text: &str) -> u32 {
        let n = self.next;
        self.next += 1;
        self.line(n, text);
        n
    }

    fn done(&self, n: u32) {
        self.line(
            n,
            &format!("DONE {:.1}s", self.start.elapsed().as_secs_f64()),
        );
    }
}

// ---------------------------------------------------------- build parsing ---

fn attr_map(list: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut m = BTreeMap::new();
    for v in list {
        let Some((k, val)) = v.split_once('=') else {
            return Err(format!("invalid value {v}"));
        };
        m.insert(k.to_string(), val.to_string());
    }
    Ok(m)
}

fn kv_fields(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for field in csv::fields(s)? {
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!("invalid value {field}"));
        };
        out.push((k.to_ascii_lowercase(), v.to_string()));
    }
    Ok(out)
}

fn check_secret(v: &str) -> Result<(), String> {
    let fields = csv::fields(v).map_err(|e| format!("failed to parse csv secret: {e}"))?;
    let (mut id, mut src, mut env, mut typ) =
        (String::new(), String::new(), String::new(), String::new());
    for field in fields {
        let Some((k, val)) = field.split_once('=') else {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        };
        match k.to_ascii_lowercase().as_str() {
            "type" => {
                if val != "file" && val != "env" {
                    return Err(format!("unsupported secret type {val:?}"));
                }
                typ = val.to_string();
            }
            "id" => id = val.to_string(),
            "source" | "src" => src = val.to_string(),
            "env" => env = val.to_string(),
            other => return Err(format!("unexpected key '{other}' in '{field}'")),
        }
    }
    if typ == "env" && env.is_empty() {
        env = std::mem::take(&mut src);
    }
    if id.is_empty() {
        return Err("secret missing ID".into());
    }
    if env.is_empty() && src.is_empty() {
        if std::env::var_os(&id).is_some() {
            env = id.clone();
        } else {
            src = id.clone();
        }
    }
    if !src.is_empty() {
        std::fs::metadata(&src)
            .map_err(|e| format!("failed to stat {src}: {}", go_path_err("stat", &src, &e)))?;
    }
    if !env.is_empty() && std::env::var_os(&env).is_none() {
        return Err(format!(
            "secret {id}: environment variable {env} is not set"
        ));
    }
    Ok(())
}

fn check_ssh(list: &[String]) -> Result<(), String> {
    let mut seen = Vec::new();
    for v in list {
        let (id, val) = match v.split_once('=') {
            Some((k, val)) => (k.to_string(), Some(val)),
            None => (v.clone(), None),
        };
        let mut paths = Vec::new();
        let mut raw = false;
        if let Some(val) = val {
            for part in val.split(',') {
                match part.split_once('=') {
                    Some(("raw", b)) => {
                        raw = urfave::parse_go_bool(b).ok_or_else(|| {
                            format!("invalid value for 'raw': {b}: strconv.ParseBool: parsing {b:?}: invalid syntax")
                        })?
                    }
                    _ => paths.push(part.to_string()),
                }
            }
        }
        if raw && paths.len() != 1 {
            return Err(format!(
                "raw mode must supply exactly one socket path for {id:?}"
            ));
        }
        let id = if id.is_empty() {
            "default".to_string()
        } else {
            id
        };
        if seen.contains(&id) {
            return Err(format!("duplicate agent ID {id:?}"));
        }
        seen.push(id.clone());
        if paths.is_empty() || (paths.len() == 1 && paths[0].is_empty()) {
            paths = vec![std::env::var("SSH_AUTH_SOCK").unwrap_or_default()];
        }
        if paths[0].is_empty() {
            return Err(format!(
                "failed to convert agent config {{{id} [] false}}: invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"
            ));
        }
        for p in &paths {
            std::fs::metadata(p).map_err(|e| {
                format!(
                    "failed to convert agent config {{{id} {paths:?} {raw}}}: {}",
                    go_path_err("stat", p, &e)
                )
            })?;
        }
    }
    Ok(())
}

fn check_allow(list: &[String]) -> Result<(), String> {
    for v in list {
        let (key, rest) = v.split_once('=').unwrap_or((v.as_str(), ""));
        let name = if key == "device" {
            if !rest.is_empty() {
                let fields = csv::fields(rest)?;
                for field in fields.iter().skip(1) {
                    match field.split_once('=') {
                        Some(("alias", _)) => {}
                        Some((k, _)) => return Err(format!("unknown device config key {k:?}")),
                        None => return Err(format!("invalid device config {field:?}")),
                    }
                }
            }
            key
        } else {
            v.as_str()
        };
        if !matches!(name, "network.host" | "security.insecure" | "device") {
            return Err(format!("unknown entitlement {name}"));
        }
    }
    Ok(())
}

fn check_registry_tls(v: &str) -> Result<(), String> {
    let (mut host, mut ca, mut cert, mut key, mut insecure) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        false,
    );
    for (k, val) in kv_fields(v)? {
        match k.as_str() {
            "host" => host = val,
            "ca" => ca = val,
            "cert" => cert = val,
            "key" => key = val,
            "insecure" => insecure = urfave::parse_go_bool(&val).unwrap_or(false),
            _ => {}
        }
    }
    if host.is_empty() {
        return Err("--registry-auth-tlscontext requires host=<host>".into());
    }
    if ca.is_empty() {
        if !insecure && (cert.is_empty() || key.is_empty()) {
            return Err(
                "--registry-auth-tlscontext requires ca=<ca> or cert=<cert>,key=<key> or insecure=true".into(),
            );
        }
    } else if cert.is_empty() != key.is_empty() {
        return Err("--registry-auth-tlscontext requires cert=<cert>,key=<key>".into());
    }
    Ok(())
}

fn check_cache(list: &[String], flag: &str) -> Result<(), String> {
    for v in list {
        if !v.contains("type=") {
            eprintln!(
                "WARN: {flag} <ref> is deprecated. Please use {flag} type=registry,ref=<ref>,<opt>=<optval>[,<opt>=<optval>] instead"
            );
            continue;
        }
        let fields = kv_fields(v)?;
        if !fields.iter().any(|(k, val)| k == "type" && !val.is_empty()) {
            return Err(format!("{flag} requires type=<type>"));
        }
    }
    Ok(())
}

/// Where an exporter's result goes.
enum Dest {
    /// Nowhere on the client (e.g. `type=image`).
    None,
    Stdout,
    File(std::fs::File, String),
    Dir(PathBuf),
}

/// One parsed `--output`.
struct Output {
    typ: String,
    attrs: BTreeMap<String, String>,
    dest: Dest,
}

impl Output {
    fn names(&self) -> Vec<String> {
        self.attrs
            .get("name")
            .map(|n| {
                n.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn parse_output(s: &str) -> Result<Output, String> {
    let mut typ = String::new();
    let mut attrs = BTreeMap::new();
    for (k, v) in kv_fields(s)? {
        if k == "type" {
            typ = v;
        } else {
            attrs.insert(k, v);
        }
    }
    if typ.is_empty() {
        return Err("--output requires type=<type>".into());
    }
    if let Some(v) = attrs.get("output") {
        return Err(format!(
            "output={v} not supported for --output, you meant dest={v}?"
        ));
    }
    let wrap = |e: String| format!("invalid output option: output: {e}");
    let dest_attr = attrs.get("dest").cloned().unwrap_or_default();
    let (file, dir) = match typ.as_str() {
        "local" => (false, true),
        "tar" => (true, false),
        "oci" | "docker" => {
            let tar = attrs
                .get("tar")
                .and_then(|t| urfave::parse_go_bool(t))
                .unwrap_or(true);
            (tar, !tar)
        }
        _ => (false, false),
    };
    let dest = if dir {
        if dest_attr.is_empty() {
            return Err(wrap(format!(
                "output directory is required for {typ} exporter"
            )));
        }
        Dest::Dir(PathBuf::from(&dest_attr))
    } else if file {
        if !dest_attr.is_empty() && dest_attr != "-" {
            if std::fs::metadata(&dest_attr).is_ok_and(|m| m.is_dir()) {
                return Err(wrap("destination file is a directory".into()));
            }
            let f = std::fs::File::create(&dest_attr)
                .map_err(|e| wrap(go_path_err("open", &dest_attr, &e)))?;
            Dest::File(f, dest_attr.clone())
        } else {
            if isatty(1) {
                return Err(wrap(format!(
                    "output file is required for {typ} exporter. refusing to write to console"
                )));
            }
            Dest::Stdout
        }
    } else {
        if !dest_attr.is_empty() {
            return Err(wrap(format!(
                "output {dest_attr} is not supported by {typ} exporter"
            )));
        }
        Dest::None
    };
    if !matches!(dest, Dest::None) {
        attrs.remove("dest");
    }
    Ok(Output { typ, attrs, dest })
}

/// Checks the daemon and the dockerfile frontend would make ("failed to solve").
fn server_checks(
    frontend: &str,
    opts: &BTreeMap<String, String>,
    locals: &BTreeMap<String, String>,
    outputs: &[Output],
) -> Result<(), String> {
    for o in outputs {
        if !matches!(o.typ.as_str(), "image" | "local" | "tar" | "oci" | "docker") {
            return Err(format!(
                "failed to solve: exporter {:?} could not be found",
                o.typ
            ));
        }
    }
    if frontend == "dockerfile.v0" {
        let Some(dir) = locals.get("dockerfile") else {
            return Err(
                "failed to solve: failed to read dockerfile: no local source \"dockerfile\" (pass --local dockerfile=DIR)".into(),
            );
        };
        if !locals.contains_key("context") {
            return Err(
                "failed to solve: failed to compute cache key: no local source \"context\" (pass --local context=DIR)".into(),
            );
        }
        let name = opts
            .get("filename")
            .map(String::as_str)
            .unwrap_or("Dockerfile");
        let path = Path::new(dir).join(name);
        let lower_ok =
            !opts.contains_key("filename") && Path::new(dir).join("dockerfile").is_file();
        if !path.is_file() && !lower_ok {
            return Err(format!(
                "failed to solve: failed to read dockerfile: open {name}: no such file or directory"
            ));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ build ---

async fn build(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    let opts = resolve_client(p, addr)?;
    let mut trace = match p.str("trace").filter(|s| !s.is_empty()) {
        Some(t) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(t)
                .map_err(|e| go_path_err("open", t, &e))?,
        ),
        None => None,
    };
    let metrics = p
        .str("debug-json-cache-metrics")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(m) = metrics
        .as_deref()
        .filter(|m| *m != "stdout" && *m != "stderr")
    {
        std::fs::File::create(m).map_err(|e| go_path_err("open", m, &e))?;
    }
    for v in p.slice("registry-auth-tlscontext") {
        check_registry_tls(&v)?;
    }
    check_ssh(&p.slice("ssh"))?;
    for s in p.slice("secret") {
        check_secret(&s)?;
    }
    check_allow(&p.slice("allow"))?;
    let mut outputs = Vec::new();
    for o in p.slice("output") {
        outputs.push(parse_output(&o)?);
    }
    check_cache(&p.slice("export-cache"), "--export-cache")?;
    check_cache(&p.slice("import-cache"), "--import-cache")?;
    if let Some(f) = p.str("source-policy-file").filter(|s| !s.is_empty()) {
        let data = std::fs::read(f).map_err(|e| go_path_err("open", f, &e))?;
        serde_json::from_slice::<serde_json::Value>(&data)
            .map_err(|e| format!("failed to unmarshal source-policy-file {f:?}: {e}"))?;
    }
    let mut frontend_opts = BTreeMap::new();
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        frontend_opts.insert("build-arg:SOURCE_DATE_EPOCH".to_string(), v);
    }
    frontend_opts.extend(attr_map(&p.slice("opt")).map_err(|e| format!("invalid opt: {e}"))?);
    let locals = attr_map(&p.slice("local")).map_err(|e| format!("invalid local: {e}"))?;
    for dir in locals.values() {
        let resolved = std::fs::canonicalize(dir).map_err(|e| {
            format!(
                "invalid local: resolve {dir}: {}",
                go_path_err("lstat", dir, &e)
            )
        })?;
        if !resolved.is_dir() {
            return Err(format!(
                "invalid local: stat {}: not a directory",
                resolved.display()
            ));
        }
    }
    for l in p.slice("oci-layout") {
        let Some((_, dir)) = l.split_once('=') else {
            return Err(format!(
                "invalid oci-layout: oci-layout option must be 'id=path/to/layout', instead had invalid {l}"
            ));
        };
        if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(format!(
                "invalid oci-layout: oci-layout context at {dir} failed to initialize: mkdir {dir}: not a directory"
            ));
        }
    }
    let frontend = p.str("frontend").unwrap_or("").to_string();
    if frontend.is_empty() {
        if isatty(0) {
            return Err("please specify --frontend or pipe LLB definition to stdin".into());
        }
        let mut def = Vec::new();
        tokio::io::stdin()
            .read_to_end(&mut def)
            .await
            .map_err(|e| format!("failed to parse input: {}", errno_text(&e)))?;
        if def.is_empty() {
            return Err("empty definition sent to build. Specify --frontend instead?".into());
        }
    } else if p.bool("no-cache") {
        frontend_opts.insert("no-cache".into(), String::new());
    }
    let build_ref = new_ref();
    let res = solve(
        p,
        ctx,
        &opts,
        &frontend,
        &frontend_opts,
        &locals,
        &mut outputs,
        &build_ref,
        trace.as_mut(),
        metrics.as_deref(),
    )
    .await;
    if let Some(rf) = p.str("ref-file").filter(|s| !s.is_empty()) {
        let _ = std::fs::write(rf, &build_ref);
    }
    res
}

/// A build ref like buildkit's identity.NewID: 25 lowercase base-36 characters.
fn new_ref() -> String {
    let seed = format!(
        "{}-{:?}-{:?}",
        std::process::id(),
        std::time::SystemTime::now(),
        Instant::now()
    );
    let digest = record::sha256_hex(seed.as_bytes());
    let mut n = u128::from_str_radix(&digest[..32], 16).unwrap_or(0);
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..25)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn solve(
    p: &Parsed,
    ctx: &Ctx,
    opts: &ClientOpts,
    frontend: &str,
    frontend_opts: &BTreeMap<String, String>,
    locals: &BTreeMap<String, String>,
    outputs: &mut [Output],
    build_ref: &str,
    trace: Option<&mut std::fs::File>,
    metrics: Option<&str>,
) -> Result<(), String> {
    let mut progress = Progress::new(p)?;
    let payload = env_u64("SIM_BUILDCTL_PAYLOAD", DEFAULT_PAYLOAD)?;
    let image_bytes = env_u64("SIM_BUILDCTL_IMAGE_BYTES", DEFAULT_IMAGE_BYTES)?;
    let (mut conn, id) = connect(opts).await?;
    ctx.state.lock().unwrap().served_by = Some(id.clone());
    let n = progress.step(&format!(
        "[simkit] connected to pod {} (namespace {})",
        id.pod, id.namespace
    ));
    progress.done(n);
    if let Ok(ms) = std::env::var("SIM_BUILDCTL_SLEEP_MS") {
        if let Ok(ms) = ms.trim().parse::<u64>() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    if let Err(e) = server_checks(frontend, frontend_opts, locals, outputs) {
        conn.close(true).await;
        return Err(e);
    }
    let labels = serde_json::json!({
        "simkit.frontend": frontend,
        "simkit.opts": frontend_opts,
    });
    let base = ImagePlan::new(Vec::new(), image_bytes, &labels);
    let mut all_names = Vec::new();
    for out in outputs.iter_mut() {
        let names = out.names();
        all_names.extend(names.iter().cloned());
        let plan = ImagePlan {
            names,
            ..base.clone()
        };
        let n = progress.step(&format!(
            "exporting to {} ({})",
            out.typ,
            describe(&out.dest)
        ));
        if let Err(e) = export(out, &plan, &mut conn, ctx).await {
            let extra = conn.helper_report().await;
            return Err(format!(
                "failed to solve: failed to export {}: {e}{extra}",
                out.typ
            ));
        }
        if out.typ == "image"
            && out
                .attrs
                .get("push")
                .is_some_and(|v| v.is_empty() || urfave::parse_go_bool(v) == Some(true))
        {
            progress.line(n, &format!("pushing {} (simulated)", plan.names.join(",")));
        }
        progress.done(n);
    }
    let n = progress.step(&format!(
        "[simkit] transferring build context: {payload} bytes"
    ));
    match buildkitd::client::echo(&mut conn.io, payload).await {
        Ok(got) => ctx.state.lock().unwrap().payload_bytes = got,
        Err(e) => {
            let msg = conn
                .fail("failed to solve: connection to buildkitd lost", e)
                .await;
            return Err(msg);
        }
    }
    progress.done(n);
    conn.close(false).await;

    if let Some(mf) = p.str("metadata-file").filter(|s| !s.is_empty()) {
        let mut md = serde_json::Map::new();
        md.insert(
            "containerimage.digest".into(),
            format!("sha256:{}", base.manifest_digest).into(),
        );
        md.insert(
            "containerimage.config.digest".into(),
            format!("sha256:{}", base.config_digest).into(),
        );
        if !all_names.is_empty() {
            md.insert("image.name".into(), all_names.join(",").into());
        }
        md.insert("simkit.pod".into(), id.pod.clone().into());
        md.insert("simkit.namespace".into(), id.namespace.clone().into());
        md.insert("buildkit.build.ref".into(), build_ref.into());
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(md)).unwrap();
        std::fs::write(mf, text).map_err(|e| go_path_err("open", mf, &e))?;
    }
    if let Some(t) = trace {
        let line = serde_json::json!({"simkit": {"pod": id.pod, "namespace": id.namespace, "ref": build_ref}});
        let _ = writeln!(t, "{line}");
    }
    if let Some(m) = metrics {
        let line = format!(
            "{}\n",
            serde_json::json!({"total": 1, "cached": 0, "duration_ms": progress.start.elapsed().as_millis() as u64})
        );
        match m {
            "stdout" => ctx.emit(&line),
            "stderr" => eprint!("{line}"),
            path => {
                let _ = std::fs::write(path, line);
            }
        }
    }
    Ok(())
}

fn describe(d: &Dest) -> String {
    match d {
        Dest::None => "no local destination".into(),
        Dest::Stdout => "stdout".into(),
        Dest::File(_, name) => name.clone(),
        Dest::Dir(p) => p.display().to_string(),
    }
}

/// Stream one exporter's result from the buildkitd to its destination.
async fn export(
    out: &mut Output,
    plan: &ImagePlan,
    conn: &mut Conn,
    ctx: &Ctx,
) -> std::io::Result<()> {
    let kind = match out.typ.as_str() {
        "docker" => ArchiveKind::Docker,
        "oci" => ArchiveKind::Oci,
        _ => ArchiveKind::Tar,
    };
    async fn write_archive<W: AsyncWrite + Unpin>(
        w: &mut W,
        plan: &ImagePlan,
        kind: ArchiveKind,
        conn: &mut Conn,
    ) -> std::io::Result<()> {
        w.write_all(&plan.head(kind)).await?;
        buildkitd::client::source_to(&mut conn.io, plan.layer_len, w).await?;
        w.write_all(&plan.tail(kind)).await?;
        w.flush().await
    }
    match std::mem::replace(&mut out.dest, Dest::None) {
        Dest::None => Ok(()),
        Dest::Stdout => {
            let mut w = ctx.tracked_stdout();
            write_archive(&mut w, plan, kind, conn).await
        }
        Dest::File(f, _) => {
            let mut w = tokio::fs::File::from_std(f);
            write_archive(&mut w, plan, kind, conn).await?;
            w.sync_all().await
        }
        Dest::Dir(dir) => {
            tokio::fs::create_dir_all(&dir).await?;
            if out.typ == "local" {
                let mut w = tokio::fs::File::create(dir.join("simkit-rootfs.bin")).await?;
                buildkitd::client::source_to(&mut conn.io, plan.layer_len, &mut w).await?;
                return Ok(());
            }
            let blobs = dir.join("blobs/sha256");
            tokio::fs::create_dir_all(&blobs).await?;
            tokio::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
            tokio::fs::write(blobs.join(&plan.config_digest), &plan.config).await?;
            tokio::fs::write(blobs.join(&plan.manifest_digest), &plan.manifest).await?;
            let mut w = tokio::fs::File::create(blobs.join(&plan.layer_digest)).await?;
            buildkitd::client::source_to(&mut conn.io, plan.layer_len, &mut w).await?;
            let index = serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", plan.manifest_digest),
                    "size": plan.manifest.len(),
                }],
            });
            tokio::fs::write(dir.join("index.json"), index.to_string()).await
        }
    }
}

// ---------------------------------------------------- other subcommands ---

async fn greet_only(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<Identity, String> {
    let opts = resolve_client(p, addr)?;
    let (conn, id) = connect(&opts).await?;
    ctx.state.lock().unwrap().served_by = Some(id.clone());
    conn.close(true).await;
    Ok(id)
}

async fn workers(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    let id = greet_only(p, ctx, addr).await?;
    let wid = format!("sim-{}", id.pod);
    if p.str("format").is_some_and(|f| !f.is_empty()) {
        let v = serde_json::json!([{
            "ID": wid,
            "Labels": {"org.mobyproject.buildkit.worker.hostname": id.pod, "simkit.namespace": id.namespace},
            "Platforms": [{"architecture": "amd64", "os": "linux"}],
        }]);
        ctx.emit(&format!("{v}\n"));
    } else if p.bool("verbose") {
        ctx.emit(&format!(
            "ID:\t{wid}\nPlatforms:\tlinux/amd64\nBuildKit:\tgithub.com/moby/buildkit v0.32.2-sim simkit\nLabels:\n\torg.mobyproject.buildkit.worker.hostname:\t{}\n\tsimkit.namespace:\t{}\n\n",
            id.pod, id.namespace
        ));
    } else {
        ctx.emit(&format!("ID\tPLATFORMS\n{wid}\tlinux/amd64\n"));
    }
    Ok(())
}

async fn du(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    let id = greet_only(p, ctx, addr).await?;
    if p.str("format").is_some_and(|f| !f.is_empty()) {
        let v = serde_json::json!([{"ID": format!("sim-{}-cache", id.pod), "Size": 1048576, "InUse": false, "Shared": false}]);
        ctx.emit(&format!("{v}\n"));
        return Ok(());
    }
    let mut s = format!(
        "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\nsim-{}-cache\ttrue\t1.05MB\t\n",
        id.pod
    );
    if p.slice("filter").is_empty() {
        s.push_str("Shared:\t\t0B\nPrivate:\t1.05MB\nReclaimable:\t1.05MB\nTotal:\t\t1.05MB\n");
    }
    ctx.emit(&s);
    Ok(())
}

async fn prune(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    greet_only(p, ctx, addr).await?;
    ctx.emit("Total:\t0B\n");
    Ok(())
}

/// `dial-stdio`: relay stdin/stdout to --addr (unix:// only, like the real one).
async fn dial_stdio(p: &Parsed, ctx: &Ctx, addr: &str) -> Result<(), String> {
    let Some((scheme, path)) = addr.split_once("://") else {
        return Err(format!("invalid address {addr}"));
    };
    if scheme != "unix" {
        return Err(format!(
            "invalid address {addr} (expected unix://, got {scheme}://)"
        ));
    }
    let secs = p.int("timeout").unwrap_or(5);
    let dial = tokio::net::UnixStream::connect(path);
    let stream = if secs > 0 {
        tokio::time::timeout(Duration::from_secs(secs as u64), dial)
            .await
            .map_err(|_| format!("dial unix {path}: i/o timeout"))?
    } else {
        dial.await
    }
    .map_err(|e| format!("dial unix {path}: connect: {}", errno_text(&e)))?;
    let (mut r, mut w) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = ctx.tracked_stdout();
    let stdin_to_conn = async move {
        let res = tokio::io::copy(&mut stdin, &mut w).await;
        let _ = w.shutdown().await;
        res.map(|_| ())
            .map_err(|e| format!("error while Copy (stdin to stream): {}", errno_text(&e)))
    };
    let conn_to_stdout = async move {
        let res = tokio::io::copy(&mut r, &mut stdout).await;
        let _ = stdout.flush().await;
        res.map(|_| ())
            .map_err(|e| format!("error while Copy (stream to stdout): {}", errno_text(&e)))
    };
    tokio::pin!(stdin_to_conn, conn_to_stdout);
    tokio::select! {
        r = &mut stdin_to_conn => {
            r?;
            conn_to_stdout.await
        }
        r = &mut conn_to_stdout => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_pod_addresses() {
        assert_eq!(
            parse_address("kube-pod://buildkitd-0?context=c1&namespace=ns&container=bk").unwrap(),
            Address::KubePod {
                context: "c1".into(),
                namespace: "ns".into(),
                pod: "buildkitd-0".into(),
                container: "bk".into()
            }
        );
        assert_eq!(
            parse_address("kube-pod://pod-a").unwrap(),
            Address::KubePod {
                context: "".into(),
                namespace: "".into(),
                pod: "pod-a".into(),
                container: "".into()
            }
        );
        assert_eq!(
            parse_address("kube-pod://Pod_A").unwrap_err(),
            "unsupported pod name: \"Pod_A\""
        );
        assert_eq!(
            parse_address("kube-pod://p?namespace=Bad").unwrap_err(),
            "unsupported namespace name: \"Bad\""
        );
        assert_eq!(
            parse_address("kube-pod://?namespace=x").unwrap_err(),
            "url lacks pod name"
        );
        assert_eq!(
            kube_pod_argv("", "ns", "p", ""),
            vec![
                "--context=",
                "--namespace=ns",
                "exec",
                "--container=",
                "-i",
                "p",
                "--",
                "buildctl",
                "dial-stdio"
            ]
        );
        assert_eq!(
            parse_address("tcp://127.0.0.1:1/").unwrap(),
            Address::Tcp("127.0.0.1:1".into())
        );
        assert_eq!(parse_address("/x").unwrap_err(), "invalid address /x");
    }

    #[test]
    fn outputs() {
        let o = parse_output("type=image,\"name=a:1,b:2\",push=true").unwrap();
        assert_eq!(o.typ, "image");
        assert_eq!(o.names(), vec!["a:1", "b:2"]);
        assert_eq!(
            parse_output("name=x").err().unwrap(),
            "--output requires type=<type>"
        );
        assert!(parse_output("type=image,dest=/x")
            .err()
            .unwrap()
            .contains("not supported by image exporter"));
        assert!(parse_output("type=local")
            .err()
            .unwrap()
            .contains("output directory is required"));
        assert!(parse_output("type=docker,output=x")
            .err()
            .unwrap()
            .contains("you meant dest=x"));
        assert_eq!(
            parse_output("type=image,bogus").err().unwrap(),
            "invalid value bogus"
        );
    }

    #[test]
    fn validations() {
        assert!(check_allow(&["network.host".into(), "device=foo,alias=bar".into()]).is_ok());
        assert_eq!(
            check_allow(&["net".into()]).unwrap_err(),
            "unknown entitlement net"
        );
        assert!(check_registry_tls("host=h,insecure=true").is_ok());
        assert!(check_registry_tls("insecure=true").is_err());
        assert!(check_secret("id=a,src=/nonexistent/zz")
            .unwrap_err()
            .contains("no such file"));
        assert_eq!(
            check_secret("src=/etc/hostname").unwrap_err(),
            "secret missing ID"
        );
        assert!(check_secret("id=x,env=SIM_SURELY_UNSET_VAR_123").is_err());
        assert!(check_secret("id=x,bad=1")
            .unwrap_err()
            .contains("unexpected key"));
        assert!(check_ssh(&["default=/nonexistent/sock".into()]).is_err());
        assert!(check_ssh(&["a=/,raw=true".into()]).is_ok());
        assert!(check_ssh(&["a=/,/tmp,raw=true".into()]).is_err());
        assert_eq!(
            attr_map(&["build-arg:X".into()]).unwrap_err(),
            "invalid value build-arg:X"
        );
        assert_eq!(new_ref().len(), 25);
    }
}
