//! The receiver's disk side: one blocking thread applies checked operations in order
//! under `dest`. Every entry is built under a temporary name in its directory and
//! renamed into place when complete, so a failed transfer leaves no half-written
//! file under a real name. Directory modes and times are applied last (writing
//! children changes a directory's mtime, and a read-only directory must stay
//! writable until it is filled); hard links are made once every file is in.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::receive::ReceiveError;

/// One checked step of a transfer; `rel` paths passed `clean_relative` and the
/// listing's parent checks.
#[derive(Debug)]
pub enum Op {
    Dir {
        rel: String,
        perms: u32,
        mtime: i64,
    },
    Symlink {
        rel: String,
        target: String,
        mtime: i64,
    },
    /// A named pipe or device node (`st_mode` carries the type).
    Special {
        rel: String,
        st_mode: u32,
        major: i64,
        minor: i64,
        mtime: i64,
    },
    FileStart {
        id: u32,
        rel: String,
        perms: u32,
        mtime: i64,
    },
    Data {
        id: u32,
        chunk: Vec<u8>,
    },
    FileEnd {
        id: u32,
    },
    HardLink {
        rel: String,
        target: String,
    },
    /// Every file is in: links, then directory metadata.
    Finish,
}

struct OpenFile {
    rel: String,
    perms: u32,
    mtime: i64,
    tmp: PathBuf,
    file: Option<File>,
}

pub struct DiskWriter {
    dest: PathBuf,
    files: HashMap<u32, OpenFile>,
    links: Vec<(String, String)>,
    dirs: Vec<(PathBuf, u32, i64)>,
    seq: u64,
}

impl DiskWriter {
    pub fn new(dest: PathBuf) -> Self {
        DiskWriter {
            dest,
            files: HashMap::new(),
            links: Vec::new(),
            dirs: Vec::new(),
            seq: 0,
        }
    }

    /// Apply operations until `Finish` (Ok) or the channel closes first (cancelled:
    /// temporary files are removed).
    pub fn run(mut self, mut rx: mpsc::Receiver<Op>) -> Result<(), ReceiveError> {
        while let Some(op) = rx.blocking_recv() {
            let finish = matches!(op, Op::Finish);
            if let Err(e) = self.apply(op) {
                self.discard();
                return Err(e);
            }
            if finish {
                return Ok(());
            }
        }
        self.discard();
        Ok(())
    }

    fn discard(&mut self) {
        for (_, f) in self.files.drain() {
            drop(f.file);
            let _ = fs::remove_file(&f.tmp);
        }
    }

    fn apply(&mut self, op: Op) -> Result<(), ReceiveError> {
        match op {
            Op::Dir { rel, perms, mtime } => {
                let path = self.dest.join(&rel);
                self.make_dir(&path).map_err(|e| write_err(&path, e))?;
                self.dirs.push((path, perms, mtime));
            }
            Op::Symlink { rel, target, mtime } => {
                let path = self.dest.join(&rel);
                let tmp = self.tmp_beside(&path);
                std::os::unix::fs::symlink(&target, &tmp)
                    .and_then(|()| set_mtime(&tmp, mtime))
                    .and_then(|()| replace(&tmp, &path))
                    .map_err(|e| cleanup(&tmp, &path, e))?;
            }
            Op::Special {
                rel,
                st_mode,
                major,
                minor,
                mtime,
            } => {
                let path = self.dest.join(&rel);
                let tmp = self.tmp_beside(&path);
                mknod(&tmp, st_mode, major, minor)
                    .and_then(|()| chmod(&tmp, st_mode & 0o7777))
                    .and_then(|()| set_mtime(&tmp, mtime))
                    .and_then(|()| replace(&tmp, &path))
                    .map_err(|e| cleanup(&tmp, &path, e))?;
            }
            Op::FileStart {
                id,
                rel,
                perms,
                mtime,
            } => {
                let path = self.dest.join(&rel);
                let tmp = self.tmp_beside(&path);
                self.files.insert(
                    id,
                    OpenFile {
                        rel,
                        perms,
                        mtime,
                        tmp,
                        file: None,
                    },
                );
            }
            Op::Data { id, chunk } => {
                let f = self.files.get_mut(&id).expect("listing checked the id");
                let path = self.dest.join(&f.rel);
                open_tmp(f)
                    .and_then(|file| file.write_all(&chunk))
                    .map_err(|e| write_err(&path, e))?;
            }
            Op::FileEnd { id } => {
                let mut f = self.files.remove(&id).expect("listing checked the id");
                let path = self.dest.join(&f.rel);
                let done = open_tmp(&mut f).map(|_| ()).and_then(|()| {
                    drop(f.file.take());
                    chmod(&f.tmp, f.perms)?;
                    set_mtime(&f.tmp, f.mtime)?;
                    replace(&f.tmp, &path)
                });
                done.map_err(|e| cleanup(&f.tmp, &path, e))?;
            }
            Op::HardLink { rel, target } => self.links.push((rel, target)),
            Op::Finish => self.finish()?,
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ReceiveError> {
        for (rel, target) in std::mem::take(&mut self.links) {
            let path = self.dest.join(&rel);
            let tmp = self.tmp_beside(&path);
            fs::hard_link(self.dest.join(&target), &tmp)
                .and_then(|()| replace(&tmp, &path))
                .map_err(|e| cleanup(&tmp, &path, e))?;
        }
        // Deepest first, so a parent's mode never blocks a child's change.
        for (path, perms, mtime) in std::mem::take(&mut self.dirs).into_iter().rev() {
            set_mtime(&path, mtime)
                .and_then(|()| chmod(&path, perms))
                .map_err(|e| write_err(&path, e))?;
        }
        Ok(())
    }

    /// A real directory at `path`: an existing one is kept (made writable for us until
    /// `finish`), anything else there is replaced.
    fn make_dir(&self, path: &Path) -> io::Result<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                if meta.permissions().mode() & 0o700 != 0o700 {
                    chmod(path, meta.permissions().mode() | 0o700)?;
                }
                return Ok(());
            }
            Ok(_) => fs::remove_file(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn tmp_beside(&mut self, path: &Path) -> PathBuf {
        self.seq += 1;
        let name = format!(".kubectl-buildkit-{}-{}.tmp", std::process::id(), self.seq);
        path.parent().unwrap_or(&self.dest).join(name)
    }
}

fn open_tmp(f: &mut OpenFile) -> io::Result<&mut File> {
    if f.file.is_none() {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&f.tmp)?;
        f.file = Some(file);
    }
    Ok(f.file.as_mut().expect("just opened"))
}

/// Move `tmp` over `path`; a directory in the way goes (the export owns its paths).
fn replace(tmp: &Path, path: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            fs::remove_dir_all(path)?;
        }
    }
    fs::rename(tmp, path)
}

fn cleanup(tmp: &Path, path: &Path, e: io::Error) -> ReceiveError {
    let _ = fs::remove_file(tmp);
    write_err(path, e)
}

fn write_err(path: &Path, source: io::Error) -> ReceiveError {
    ReceiveError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn chmod(path: &Path, perms: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(perms))
}

/// Set atime and mtime (Unix nanoseconds) without following a symlink.
fn set_mtime(path: &Path, nanos: i64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: nanos.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: nanos.rem_euclid(1_000_000_000) as libc::c_long,
    };
    let times = [ts, ts];
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path and `times` holds two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mknod(path: &Path, st_mode: u32, major: i64, minor: i64) -> io::Result<()> {
    let c = c_path(path)?;
    let dev = libc::makedev(major as libc::c_uint, minor as libc::c_uint);
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), st_mode as libc::mode_t, dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
