//! The stand-in `docker`: the docker CLI's command line for `build`, `load`, `push`,
//! `version` and `info` (also as `image build|load|push`, `builder build`,
//! `buildx build`, `system info`), with no daemon behind it.
//!
//! Environment (all optional):
//! - `SIM_DOCKER_RECORD=FILE`: append one JSON line per invocation:
//!   `{"argv","cwd","env","stdin_bytes","stdin_sha256","exit_code","error","loaded"}`.
//! - `SIM_DOCKER_EXIT=N`: every command records and exits N (stdin of `load` is
//!   still read and recorded; N=0 runs normally).
//! - `SIM_DOCKER_FAIL_ON=SUB`: only subcommand SUB (`build`, `load`, `push`,
//!   `version`, `info`) records and exits 1.

use std::io::{Read, Write};
use std::path::Path;

use sha2::Digest;

use super::image;
use super::pflag::{self, b, v, PFlag, PParsed};
use super::record::{self, isatty, StreamStat};

/// Client and server version the stand-in reports.
pub const DOCKER_VERSION: &str = "28.2.2-sim";

const GLOBAL: &[PFlag] = &[
    v("config", None),
    v("context", Some('c')),
    b("debug", Some('D')),
    v("host", Some('H')),
    v("log-level", Some('l')),
    b("tls", None),
    v("tlscacert", None),
    v("tlscert", None),
    v("tlskey", None),
    b("tlsverify", None),
    b("version", Some('v')),
    b("help", None),
];

const BUILD: &[PFlag] = &[
    // buildx (BuildKit) build flags
    v("add-host", None),
    v("allow", None),
    v("annotation", None),
    v("attest", None),
    v("build-arg", None),
    v("build-context", None),
    v("builder", None),
    v("cache-from", None),
    v("cache-to", None),
    v("call", None),
    b("check", None),
    v("cgroup-parent", None),
    b("debug", Some('D')),
    v("file", Some('f')),
    v("iidfile", None),
    v("label", None),
    b("load", None),
    v("metadata-file", None),
    v("network", None),
    b("no-cache", None),
    v("no-cache-filter", None),
    v("output", Some('o')),
    v("platform", None),
    v("progress", None),
    PFlag {
        long: "provenance",
        short: None,
        value: true,
        no_opt_default: Some("true"),
    },
    b("pull", None),
    b("push", None),
    b("quiet", Some('q')),
    PFlag {
        long: "sbom",
        short: None,
        value: true,
        no_opt_default: Some("true"),
    },
    v("secret", None),
    v("shm-size", None),
    v("ssh", None),
    v("tag", Some('t')),
    v("target", None),
    v("ulimit", None),
    // legacy builder flags
    b("compress", None),
    v("cpu-period", None),
    v("cpu-quota", None),
    v("cpu-shares", Some('c')),
    v("cpuset-cpus", None),
    v("cpuset-mems", None),
    b("disable-content-trust", None),
    b("force-rm", None),
    v("isolation", None),
    v("memory", Some('m')),
    v("memory-swap", None),
    b("rm", None),
    v("security-opt", None),
    b("squash", None),
    b("help", None),
];

const LOAD: &[PFlag] = &[
    v("input", Some('i')),
    v("platform", None),
    b("quiet", Some('q')),
    b("help", None),
];

const PUSH: &[PFlag] = &[
    b("all-tags", Some('a')),
    b("disable-content-trust", None),
    v("platform", None),
    b("quiet", Some('q')),
    b("help", None),
];

const VERSION_FLAGS: &[PFlag] = &[v("format", Some('f')), b("help", None)];

/// What one invocation did, for the record.
#[derive(Default)]
struct Rec {
    stdin: Option<StreamStat>,
    loaded: Vec<String>,
}

/// Why a command failed: message and exit status.
struct Fail {
    msg: String,
    code: i32,
}

fn fail(code: i32, msg: impl Into<String>) -> Fail {
    Fail {
        msg: msg.into(),
        code,
    }
}

/// Entry point of the `docker` binary.
pub fn main() -> ! {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut rec = Rec::default();
    let (code, error) = match run(&argv, &mut rec) {
        Ok(()) => (0, None),
        Err(f) => (f.code, Some(f.msg)),
    };
    if std::env::var_os("SIM_DOCKER_RECORD").is_some() {
        let stdin = rec.stdin.as_ref();
        let line = serde_json::json!({
            "argv": argv,
            "cwd": record::cwd_string(),
            "env": record::env_snapshot(&["DOCKER_BUILDKIT"], &["SIM_", "DOCKER_"]),
            "stdin_bytes": stdin.map(|s| s.bytes),
            "stdin_sha256": stdin.map(|s| record::hex(&s.hasher.clone().finalize())),
            "exit_code": code,
            "error": error,
            "loaded": rec.loaded,
        });
        record::append_record("SIM_DOCKER_RECORD", &line);
    }
    if let Some(e) = error {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{e}");
    }
    std::process::exit(code)
}

fn read_stdin(rec: &mut Rec) -> Result<Vec<u8>, Fail> {
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut data)
        .map_err(|e| fail(1, format!("read stdin: {e}")))?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(&data);
    rec.stdin = Some(StreamStat {
        bytes: data.len() as u64,
        hasher,
    });
    Ok(data)
}

fn usage_line(cmd: &str) -> &'static str {
    match cmd {
        "build" => "[OPTIONS] PATH | URL | -",
        "load" => "[OPTIONS]",
        "push" => "[OPTIONS] NAME[:TAG]",
        _ => "[OPTIONS]",
    }
}

fn usage_error(display: &str, cmd: &str, msg: &str, code: i32) -> Fail {
    fail(
        code,
        format!(
            "{msg}\n\nUsage:  {display} {}\n\nRun '{display} --help' for more information",
            usage_line(cmd)
        ),
    )
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn run(argv: &[String], rec: &mut Rec) -> Result<(), Fail> {
    let root = pflag::parse(GLOBAL, argv, false).map_err(|e| {
        fail(
            125,
            format!("{e}\n\nUsage:  docker [OPTIONS] COMMAND [ARG...]\n\nRun 'docker --help' for more information"),
        )
    })?;
    if root.bool("version") {
        say(&format!("Docker version {DOCKER_VERSION}, build simkit\n"));
        return Ok(());
    }
    if root.args.is_empty() || root.bool("help") {
        say("\nUsage:  docker [OPTIONS] COMMAND\n\nA self-sufficient runtime for containers (simkit stand-in)\n\nCommands:\n  build   Build an image from a Dockerfile\n  load    Load an image from a tar archive or STDIN\n  push    Upload an image to a registry\n  version Show the Docker version information\n  info    Display system-wide information\n");
        return Ok(());
    }
    let a = &root.args;
    let second = a.get(1).map(String::as_str).unwrap_or("");
    let (cmd, display, rest) = match (a[0].as_str(), second) {
        ("image", "build" | "load" | "push") | ("builder", "build") | ("system", "info") => {
            (second, format!("docker {} {second}", a[0]), &a[2..])
        }
        ("buildx", "build" | "b") => ("build", "docker buildx build".to_string(), &a[2..]),
        ("build" | "load" | "push" | "version" | "info", _) => {
            (a[0].as_str(), format!("docker {}", a[0]), &a[1..])
        }
        (other, _) => {
            return Err(fail(
                1,
                format!("docker: unknown command: docker {other}\n\nRun 'docker --help' for more information"),
            ))
        }
    };

    let forced = match std::env::var("SIM_DOCKER_EXIT") {
        Ok(n) if !n.trim().is_empty() => {
            Some(n.trim().parse::<i32>().unwrap_or(1)).filter(|n| *n != 0)
        }
        _ => None,
    }
    .map(|n| (n, format!("SIM_DOCKER_EXIT={n}")))
    .or_else(|| {
        std::env::var("SIM_DOCKER_FAIL_ON")
            .ok()
            .filter(|s| s.trim() == cmd)
            .map(|s| (1, format!("SIM_DOCKER_FAIL_ON={}", s.trim())))
    });
    if let Some((code, why)) = forced {
        let reads_stdin = cmd == "load"
            && !rest.iter().any(|x| x == "-i" || x.starts_with("--input"))
            || cmd == "build" && rest.iter().any(|x| x == "-");
        if reads_stdin && !isatty(0) {
            read_stdin(rec)?;
        }
        return Err(fail(
            code,
            format!("Error response from daemon: simulated failure ({why})"),
        ));
    }

    let flags = match cmd {
        "build" => BUILD,
        "load" => LOAD,
        "push" => PUSH,
        _ => VERSION_FLAGS,
    };
    let p = pflag::parse(flags, rest, true).map_err(|e| usage_error(&display, cmd, &e, 125))?;
    if p.bool("help") {
        say(&format!("\nUsage:  {display} {}\n", usage_line(cmd)));
        return Ok(());
    }
    match cmd {
        "build" => build(&display, &p, rec),
        "load" => load(&display, &p, rec),
        "push" => push(&display, &p),
        "version" => version(&p),
        _ => info(&p),
    }
}

fn check_secret(spec: &str) -> Result<(), Fail> {
    let fields = super::csv::fields(spec).map_err(|e| fail(1, format!("ERROR: {e}")))?;
    let mut id = String::new();
    let mut src = String::new();
    let mut typ = String::new();
    for field in &fields {
        let (k, val) = field.split_once('=').ok_or_else(|| {
            fail(
                1,
                format!("ERROR: invalid field '{field}' must be a key=value pair"),
            )
        })?;
        match k.to_ascii_lowercase().as_str() {
            "id" => id = val.into(),
            "src" | "source" => src = val.into(),
            "type" => typ = val.into(),
            "env" => {}
            other => {
                return Err(fail(
                    1,
                    format!("ERROR: unexpected key '{other}' in '{field}'"),
                ))
            }
        }
    }
    if id.is_empty() {
        return Err(fail(1, "ERROR: secret missing ID"));
    }
    if typ != "env" && !src.is_empty() && std::fs::metadata(&src).is_err() {
        return Err(fail(
            1,
            format!("ERROR: failed to stat {src}: stat {src}: no such file or directory"),
        ));
    }
    Ok(())
}

fn build(display: &str, p: &PParsed, rec: &mut Rec) -> Result<(), Fail> {
    if p.args.len() != 1 {
        return Err(usage_error(
            display,
            "build",
            &format!("docker: '{display}' requires 1 argument"),
            1,
        ));
    }
    let context = &p.args[0];
    let file = p.get("file");
    if context == "-" && file == Some("-") {
        return Err(fail(
            1,
            "ERROR: invalid argument: can't use stdin for both build context and dockerfile",
        ));
    }
    let mut dockerfile: Vec<u8> = Vec::new();
    let is_url = ["http://", "https://", "git://", "git@", "github.com/"]
        .iter()
        .any(|pre| context.starts_with(pre));
    if context == "-" {
        dockerfile = read_stdin(rec)?;
    } else if !is_url {
        match std::fs::metadata(context) {
            Err(_) => {
                return Err(fail(
                    1,
                    format!("ERROR: unable to prepare context: path {context:?} not found"),
                ))
            }
            Ok(m) if !m.is_dir() => {
                return Err(fail(
                    1,
                    format!(
                        "ERROR: unable to prepare context: context must be a directory: {context}"
                    ),
                ))
            }
            Ok(_) => {}
        }
    }
    match file {
        Some("-") => dockerfile = read_stdin(rec)?,
        Some(f) => {
            dockerfile = std::fs::read(f).map_err(|_| {
                fail(
                    1,
                    format!("ERROR: failed to build: failed to solve: failed to read dockerfile: open {f}: no such file or directory"),
                )
            })?
        }
        None if context != "-" && !is_url => {
            let dir = Path::new(context);
            dockerfile = std::fs::read(dir.join("Dockerfile"))
                .or_else(|_| std::fs::read(dir.join("dockerfile")))
                .map_err(|_| {
                    fail(
                        1,
                        "ERROR: failed to build: failed to solve: failed to read dockerfile: open Dockerfile: no such file or directory",
                    )
                })?;
        }
        None => {}
    }
    if let Some(mode) = p.get("progress") {
        if !matches!(mode, "auto" | "plain" | "tty" | "quiet" | "rawjson") {
            return Err(fail(1, format!("ERROR: invalid progress mode {mode}")));
        }
    }
    for s in p.all("secret") {
        check_secret(s)?;
    }
    let tags = p.all("tag");
    let mut h = sha2::Sha256::new();
    h.update(context.as_bytes());
    h.update(&dockerfile);
    let mut args: Vec<&str> = p.all("build-arg");
    args.sort();
    for a in args
        .iter()
        .chain(p.get("target").iter())
        .chain(p.all("platform").iter())
    {
        h.update(a.as_bytes());
        h.update([0]);
    }
    let id = format!("sha256:{}", record::hex(&h.finalize()));
    let quiet = p.bool("quiet") || p.get("progress") == Some("quiet");
    if !quiet {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "#0 building with \"default\" instance using docker driver (simulated)"
        );
        let _ = writeln!(
            err,
            "#1 [internal] load build definition from {}",
            file.unwrap_or("Dockerfile")
        );
        let _ = writeln!(err, "#1 DONE 0.0s");
        let _ = writeln!(err, "#2 exporting to image");
        let _ = writeln!(err, "#2 writing image {id} done");
        for t in &tags {
            let _ = writeln!(err, "#2 naming to {} done", image::full_name(t));
        }
        if p.bool("push") {
            let _ = writeln!(err, "#2 pushing {} (simulated)", tags.join(","));
        }
        let _ = writeln!(err, "#2 DONE 0.0s");
    }
    if let Some(f) = p.get("iidfile") {
        std::fs::write(f, &id).map_err(|e| fail(1, format!("ERROR: {e}")))?;
    }
    if let Some(f) = p.get("metadata-file") {
        let md = serde_json::json!({
            "containerimage.digest": id,
            "image.name": tags.iter().map(|t| image::full_name(t)).collect::<Vec<_>>().join(","),
        });
        std::fs::write(f, serde_json::to_string_pretty(&md).unwrap())
            .map_err(|e| fail(1, format!("ERROR: {e}")))?;
    }
    if p.bool("quiet") {
        say(&format!("{id}\n"));
    }
    Ok(())
}

fn load(display: &str, p: &PParsed, rec: &mut Rec) -> Result<(), Fail> {
    if !p.args.is_empty() {
        return Err(usage_error(
            display,
            "load",
            &format!("docker: '{display}' accepts no arguments"),
            1,
        ));
    }
    let data = match p.get("input") {
        Some(path) => std::fs::read(path).map_err(|e| {
            let msg = e.to_string();
            let msg = msg
                .split(" (os error")
                .next()
                .unwrap_or(&msg)
                .to_lowercase();
            fail(1, format!("open {path}: {msg}"))
        })?,
        None => {
            if isatty(0) {
                return Err(fail(1, "requested load from stdin, but stdin is empty"));
            }
            read_stdin(rec)?
        }
    };
    if data.is_empty() {
        return Err(fail(
            1,
            "Error response from daemon: requested load from stdin, but stdin is empty",
        ));
    }
    let lines = match image::inspect_archive(&data) {
        Some(Ok(tags)) => {
            rec.loaded = tags.clone();
            tags.iter()
                .map(|t| format!("Loaded image: {t}\n"))
                .collect::<String>()
        }
        Some(Err(id)) => {
            rec.loaded = vec![id.clone()];
            format!("Loaded image ID: {id}\n")
        }
        None => {
            let id = format!("sha256:{}", record::sha256_hex(&data));
            rec.loaded = vec![id.clone()];
            format!("Loaded image ID: {id}\n")
        }
    };
    say(&lines);
    Ok(())
}

fn push(display: &str, p: &PParsed) -> Result<(), Fail> {
    if p.args.len() != 1 {
        return Err(usage_error(
            display,
            "push",
            &format!("docker: '{display}' requires 1 argument"),
            1,
        ));
    }
    let name = &p.args[0];
    let repo = name.rsplit_once('@').map(|(r, _)| r).unwrap_or(name);
    let last_start = repo.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match repo[last_start..].find(':') {
        Some(i) => &repo[..last_start + i],
        None => repo,
    };
    if repo.is_empty() || repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(fail(
            1,
            format!("invalid reference format: repository name ({repo}) must be lowercase"),
        ));
    }
    let full = image::full_name(name);
    let tag = image::familiar_name(name)
        .rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| "latest".into());
    let repo_full = full.strip_suffix(&format!(":{tag}")).unwrap_or(&full);
    let digest = record::sha256_hex(full.as_bytes());
    if !p.bool("quiet") {
        say(&format!(
            "The push refers to repository [{repo_full}]\n{}: Pushed\n{tag}: digest: sha256:{digest} size: 528\n",
            &digest[..12]
        ));
    } else {
        say(&format!("{full}\n"));
    }
    Ok(())
}

fn template(fmt: &str, fields: &[(&str, &str)], json: &serde_json::Value) -> String {
    let mut out = fmt.replace("{{json .}}", &json.to_string());
    for (k, v) in fields {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn version(p: &PParsed) -> Result<(), Fail> {
    let json = serde_json::json!({
        "Client": {"Version": DOCKER_VERSION, "ApiVersion": "1.50", "Os": "linux", "Arch": "amd64"},
        "Server": {"Version": DOCKER_VERSION, "ApiVersion": "1.50", "Os": "linux", "Arch": "amd64"},
    });
    match p.get("format") {
        Some("json") => say(&format!("{json}\n")),
        Some(f) => say(&format!(
            "{}\n",
            template(
                f,
                &[
                    (".Client.Version", DOCKER_VERSION),
                    (".Server.Version", DOCKER_VERSION),
                    (".Client.APIVersion", "1.50"),
                    (".Server.APIVersion", "1.50"),
                    (".Server.Os", "linux"),
                    (".Server.Arch", "amd64"),
                ],
                &json
            )
        )),
        None => say(&format!(
            "Client:\n Version:           {DOCKER_VERSION}\n API version:       1.50\n OS/Arch:           linux/amd64\n Context:           default\n\nServer: simkit stand-in\n Engine:\n  Version:          {DOCKER_VERSION}\n  API version:      1.50 (minimum version 1.24)\n  OS/Arch:          linux/amd64\n"
        )),
    }
    Ok(())
}

fn info(p: &PParsed) -> Result<(), Fail> {
    let json = serde_json::json!({
        "ServerVersion": DOCKER_VERSION, "Driver": "overlay2", "OSType": "linux",
        "Architecture": "x86_64", "Name": "simkit",
    });
    match p.get("format") {
        Some("json") => say(&format!("{json}\n")),
        Some(f) => say(&format!(
            "{}\n",
            template(
                f,
                &[
                    (".ServerVersion", DOCKER_VERSION),
                    (".Driver", "overlay2"),
                    (".OSType", "linux"),
                    (".Architecture", "x86_64"),
                    (".Name", "simkit"),
                ],
                &json
            )
        )),
        None => say(&format!(
            "Client:\n Version:    {DOCKER_VERSION}\n Context:    default\n Debug Mode: false\n\nServer:\n Containers: 0\n Images: 0\n Server Version: {DOCKER_VERSION}\n Storage Driver: overlay2\n OSType: linux\n Architecture: x86_64\n Name: simkit\n"
        )),
    }
    Ok(())
}
