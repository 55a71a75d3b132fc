//! A real BuildKit and a real registry under the tests: N private dockerd (Debian's
//! 20.10, BuildKit v0.8 inside) with the busybox base image imported into each, and one
//! `docker-registry` on 127.0.0.1, all under one temporary directory.
//!
//! Nothing is left behind: a [`reaper`] process owns the cleanup and runs when the
//! fixture is dropped, when the shared fixture's atexit hook runs (statics never drop),
//! or when the test process dies in any way. Where this machine cannot run it (not
//! root, a program missing, dockerd failing), [`RealBuildkit::start`] says why; the
//! [`shared`](RealBuildkit::shared) fixture then prints one loud line and lets the test
//! pass, except under `CI=true`, where it panics: a failure, never a skip.

mod dockerd;
mod http;
mod reaper;
mod registry;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use dockerd::{dial_buildkit_at, Dockerd, BUSYBOX_IMAGE, DOCKER_CLI};
pub use http::HttpAnswer;
pub use registry::Registry;

/// What to start.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// How many dockerd (each one BuildKit with its own cache); 0 = a registry only.
    pub daemons: usize,
    /// htpasswd users (user, password) of the registry; empty = an open registry.
    pub registry_users: Vec<(String, String)>,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        FixtureOptions {
            daemons: 1,
            registry_users: Vec::new(),
        }
    }
}

/// Why the fixture cannot run here.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub reason: String,
}

impl Unavailable {
    fn new(reason: impl Into<String>) -> Self {
        Unavailable {
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "real BuildKit fixture unavailable: {}", self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// N dockerd + 1 registry + the busybox image in each daemon; stops all on Drop.
pub struct RealBuildkit {
    daemons: Vec<Dockerd>,
    registry: Registry,
    dir: PathBuf,
    started_in: Duration,
    reaper: Mutex<Option<reaper::Reaper>>,
}

/// The shared fixture's daemon count: two, so a test can tell which one served it.
const SHARED_DAEMONS: usize = 2;

static SHARED: OnceLock<Result<RealBuildkit, Unavailable>> = OnceLock::new();

impl RealBuildkit {
    /// Start a fixture (seconds). Err(Unavailable) when this machine cannot.
    pub fn start(opts: FixtureOptions) -> Result<RealBuildkit, Unavailable> {
        let began = Instant::now();
        if std::env::var_os("REALKIT_DISABLE").is_some_and(|v| !v.is_empty()) {
            return Err(Unavailable::new("REALKIT_DISABLE is set"));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable::new(
                "not root (dockerd needs root; run the tests as root)",
            ));
        }
        let need = |name: &str, package: &str| {
            find_program(name).ok_or_else(|| {
                Unavailable::new(format!("{name} is not on PATH (apt-get install {package})"))
            })
        };
        let dockerd_bin = need("dockerd", "docker.io")?;
        need("containerd", "containerd")?;
        need("runc", "runc")?;
        let registry_bin = need("docker-registry", "docker-registry")?;
        let busybox = need("busybox", "busybox-static")?;
        if !Path::new(DOCKER_CLI).is_file() {
            return Err(Unavailable::new(format!(
                "{DOCKER_CLI} is missing (apt-get install docker.io)"
            )));
        }
        if elf_is_dynamic(&busybox) {
            return Err(Unavailable::new(format!(
                "{} is dynamically linked and cannot run alone in an image (apt-get install busybox-static)",
                busybox.display()
            )));
        }

        let dir = tempfile::Builder::new()
            .prefix("realkit-")
            .tempdir()
            .map_err(|e| Unavailable::new(format!("creating a temporary directory: {e}")))?
            .keep();
        let dir = dir.canonicalize().unwrap_or(dir);
        let reaper = match reaper::Reaper::start(&dir) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Unavailable::new(format!("starting the reaper: {e}")));
            }
        };
        // From here on an early return drops `reaper`, which removes everything.
        let archive = busybox_archive(&busybox, &dir)?;
        let mut daemons = Vec::with_capacity(opts.daemons);
        for i in 0..opts.daemons {
            daemons.push(Dockerd::spawn(&dockerd_bin, &dir.join(format!("d{i}")))?);
        }
        let registry = Registry::start(&registry_bin, &dir.join("registry"), &opts.registry_users)?;
        std::thread::scope(|s| {
            let jobs: Vec<_> = daemons
                .iter_mut()
                .map(|d| {
                    let archive = &archive;
                    s.spawn(move || {
                        d.wait_ready()?;
                        d.import_busybox(archive)
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join()
                        .unwrap_or_else(|_| Err(Unavailable::new("panicked")))
                })
                .collect::<Result<Vec<()>, Unavailable>>()
        })?;
        Ok(RealBuildkit {
            daemons,
            registry,
            dir,
            started_in: began.elapsed(),
            reaper: Mutex::new(Some(reaper)),
        })
    }

    /// One fixture per test binary (two daemons, an open registry), started on first
    /// use and stopped at process exit. None, with one loud stderr line, when this
    /// machine cannot run it; under `CI=true` that panics instead.
    pub fn shared() -> Option<&'static RealBuildkit> {
        let started = SHARED.get_or_init(|| {
            let r = RealBuildkit::start(FixtureOptions {
                daemons: SHARED_DAEMONS,
                registry_users: Vec::new(),
            });
            if r.is_ok() {
                // SAFETY: registering a plain extern "C" fn with no captured state.
                unsafe { libc::atexit(stop_shared) };
            }
            r
        });
        match started {
            Ok(kit) => Some(kit),
            Err(e) => {
                skip_or_fail(e);
                None
            }
        }
    }

    pub fn daemons(&self) -> &[Dockerd] {
        &self.daemons
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How long [`start`](Self::start) took (for BENCHMARKS.md).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The fixture's temporary directory (removed when it stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stop everything now and wait until it is gone (idempotent).
    pub fn stop(&self) {
        let reaper = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut r) = reaper {
            r.finish();
        }
        for d in &self.daemons {
            d.reap();
        }
        self.registry.reap();
    }
}

impl Drop for RealBuildkit {
    fn drop(&mut self) {
        self.stop();
    }
}

extern "C" fn stop_shared() {
    if let Some(Ok(kit)) = SHARED.get() {
        kit.stop();
    }
}

/// The loud line (and the CI failure) for a fixture that cannot start.
pub fn skip_or_fail(e: &Unavailable) {
    let reason = e.reason.replace('\n', " | ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the real BuildKit fixture cannot start: {reason}");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let line = format!(
        "!!!!! REAL BUILDKIT UNAVAILABLE: {test} PASSES WITHOUT RUNNING: {reason} (with CI=true this fails) !!!!!\n"
    );
    // One write, so lines of tests running in parallel do not interleave.
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when the ELF file has a PT_INTERP program header (needs a dynamic loader).
fn elf_is_dynamic(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if data.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum as usize).any(|i| {
        let o = phoff as usize + i * phentsize as usize;
        data.get(o..o + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// A tar of `bin/busybox` plus one symlink per applet and an empty `tmp`, made once.
fn busybox_archive(busybox: &Path, dir: &Path) -> Result<PathBuf, Unavailable> {
    let fail = |what: String| Unavailable::new(what);
    let tree = dir.join("busybox");
    let bin = tree.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| fail(format!("creating {}: {e}", bin.display())))?;
    std::fs::create_dir_all(tree.join("tmp")).map_err(|e| fail(format!("creating tmp: {e}")))?;
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(|e| fail(format!("copying {}: {e}", busybox.display())))?;
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| fail(format!("running busybox --list: {e}")))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    let archive = dir.join("busybox.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .map_err(|e| fail(format!("running tar: {e}")))?;
    if !status.success() {
        return Err(fail(format!("tar of the busybox tree failed ({status})")));
    }
    Ok(archive)
}
