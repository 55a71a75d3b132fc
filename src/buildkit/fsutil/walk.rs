//! The sender's walk: depth-first, entries sorted byte-wise within each directory,
//! filtered by the daemon's include / exclude patterns and follow paths, parents of
//! every included entry sent before it (lazily, so an excluded directory that holds
//! an `!` exception still gets its parent line).

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::fsutil::types::Stat;

use super::mode::{go_mode, MODE_DIR};
use crate::buildkit::patterns::{PatternError, PatternMatcher};

/// What the daemon asked to see of a directory.
#[derive(Debug, Clone, Default)]
pub struct WalkFilter {
    includes: Option<PatternMatcher>,
    excludes: Option<PatternMatcher>,
}

impl WalkFilter {
    /// From the DiffCopy request's `include-patterns`, `exclude-patterns` and
    /// `followpaths` (symlinks among the follow paths are resolved inside `root`).
    pub fn new(
        root: &Path,
        includes: &[String],
        excludes: &[String],
        followpaths: &[String],
    ) -> Result<WalkFilter, PatternError> {
        let mut include_list: Vec<String> = includes.to_vec();
        if !followpaths.is_empty() {
            include_list.extend(follow_links(root, followpaths));
        }
        let includes = if include_list.is_empty() {
            None
        } else {
            Some(PatternMatcher::new(&include_list)?)
        };
        let excludes = PatternMatcher::new(excludes)?;
        Ok(WalkFilter {
            includes,
            excludes: (!excludes.is_empty()).then_some(excludes),
        })
    }
}

/// Follow paths plus the targets their symlinks lead to (inside the root).
fn follow_links(root: &Path, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        let mut current = clean_relative(p);
        for _ in 0..32 {
            if current.is_empty() || out.contains(&current) {
                break;
            }
            out.push(current.clone());
            let Ok(target) = std::fs::read_link(root.join(&current)) else {
                break;
            };
            let target = target.to_string_lossy().to_string();
            current = if target.starts_with('/') {
                clean_relative(&target)
            } else {
                let parent = current.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                clean_relative(&format!("{parent}/{target}"))
            };
        }
    }
    out
}

/// A path made relative and clean, `..` never climbing above the root.
fn clean_relative(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// One entry to send: its STAT and, for a regular file with content, where it is.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    pub stat: Stat,
    pub file: Option<PathBuf>,
}

/// Walk `root`, calling `emit` for each entry in wire order. `emit` may stop the
/// walk by returning an error.
pub fn walk<E>(
    root: &Path,
    filter: &WalkFilter,
    emit: &mut dyn FnMut(WalkEntry) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut walker = Walker {
        filter,
        emit,
        pending: Vec::new(),
        hard_links: HashMap::new(),
    };
    walker.dir(root, "")
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError<E> {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the transfer stopped")]
    Stopped(E),
}

struct Walker<'a, E> {
    filter: &'a WalkFilter,
    emit: &'a mut dyn FnMut(WalkEntry) -> Result<(), E>,
    /// Directories entered but not sent yet (sent before their first included entry).
    pending: Vec<Option<Stat>>,
    /// (dev, inode) of multiply-linked files already sent, and their path.
    hard_links: HashMap<(u64, u64), String>,
}

impl<E> Walker<'_, E> {
    fn dir(&mut self, abs: &Path, rel: &str) -> Result<(), WalkError<E>> {
        let io_err = |source| WalkError::Io {
            path: abs.to_path_buf(),
            source,
        };
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(abs)
            .map_err(io_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child_abs = abs.join(&name);
            let name = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let meta = match std::fs::symlink_metadata(&child_abs) {
                Ok(m) => m,
                // Gone since the listing: not ours to send.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(WalkError::Io {
                        path: child_abs,
                        source,
                    })
                }
            };
            let is_dir = meta.is_dir();
            // Not included itself, but something below might be: walk, send lazily.
            let mut lazy = false;
            if let Some(inc) = &self.filter.includes {
                if !inc.matches(&child_rel) {
                    if is_dir && inc.could_match_below(&child_rel) {
                        lazy = true;
                    } else {
                        continue;
                    }
                }
            }
            if let Some(exc) = &self.filter.excludes {
                if exc.matches(&child_rel) {
                    if is_dir && exc.has_exclusions() {
                        lazy = true;
                    } else {
                        continue;
                    }
                }
            }
            let mut stat =
                stat_of(&child_rel, &child_abs, &meta).map_err(|source| WalkError::Io {
                    path: child_abs.clone(),
                    source,
                })?;
            if is_dir {
                if lazy {
                    self.pending.push(Some(stat));
                } else {
                    self.send(WalkEntry { stat, file: None })?;
                    self.pending.push(None);
                }
                let result = self.dir(&child_abs, &child_rel);
                self.pending.pop();
                result?;
                continue;
            }
            let mut file = None;
            if meta.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.hard_links.get(&key) {
                        stat.linkname = first.clone();
                        stat.size = 0;
                    } else {
                        self.hard_links.insert(key, child_rel.clone());
                    }
                }
                if stat.linkname.is_empty() {
                    file = Some(child_abs);
                }
            }
            self.send(WalkEntry { stat, file })?;
        }
        Ok(())
    }

    fn send(&mut self, entry: WalkEntry) -> Result<(), WalkError<E>> {
        for parent in self.pending.iter_mut() {
            if let Some(stat) = parent.take() {
                (self.emit)(WalkEntry { stat, file: None }).map_err(WalkError::Stopped)?;
            }
        }
        (self.emit)(entry).map_err(WalkError::Stopped)
    }
}

fn stat_of(rel: &str, abs: &Path, meta: &std::fs::Metadata) -> io::Result<Stat> {
    let mode = go_mode(meta);
    let mut stat = Stat {
        path: rel.to_string(),
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        mod_time: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ..Default::default()
    };
    if mode & MODE_DIR == 0 {
        stat.size = meta.size() as i64;
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        stat.linkname = std::fs::read_link(abs)?.to_string_lossy().to_string();
    }
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_block_device() || ft.is_char_device() {
            let rdev = meta.rdev();
            stat.devmajor = libc::major(rdev) as i64;
            stat.devminor = libc::minor(rdev) as i64;
        }
    }
    Ok(stat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for d in ["a", "a/b", "a.d", "empty", "node_modules/pkg", "keep/sub"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "a/z.txt",
            "a/b/c.txt",
            "a.d/x",
            "a.txt",
            "B.txt",
            "node_modules/pkg/i.js",
            "keep/sub/x.log",
            "keep/sub/y.txt",
            "Dockerfile",
            "h\u{e9}.txt",
        ] {
            std::fs::write(r.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", r.join("link")).unwrap();
        std::fs::hard_link(r.join("a.txt"), r.join("hard")).unwrap();
        dir
    }

    fn paths(root: &Path, filter: &WalkFilter) -> Vec<String> {
        let mut out = Vec::new();
        walk::<Infallible>(root, filter, &mut |e| {
            out.push(e.stat.path);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn depth_first_bytewise_order_with_every_kind() {
        let dir = tree();
        let all = paths(dir.path(), &WalkFilter::default());
        assert_eq!(
            all,
            vec![
                "B.txt",
                "Dockerfile",
                "a",
                "a/b",
                "a/b/c.txt",
                "a/z.txt",
                "a.d",
                "a.d/x",
                "a.txt",
                "empty",
                "hard",
                "h\u{e9}.txt",
                "keep",
                "keep/sub",
                "keep/sub/x.log",
                "keep/sub/y.txt",
                "link",
                "node_modules",
                "node_modules/pkg",
                "node_modules/pkg/i.js",
            ]
        );
    }

    #[test]
    fn stats_carry_links_sizes_and_modes() {
        let dir = tree();
        let mut entries = Vec::new();
        walk::<Infallible>(dir.path(), &WalkFilter::default(), &mut |e| {
            entries.push(e);
            Ok(())
        })
        .unwrap();
        let get = |p: &str| entries.iter().find(|e| e.stat.path == p).unwrap();
        assert_eq!(get("link").stat.linkname, "a.txt");
        assert!(get("link").file.is_none());
        assert_eq!(get("a.txt").stat.size, 5);
        assert!(get("a.txt").file.is_some());
        // "a.txt" sorts before "hard": the second name is the link.
        assert_eq!(get("hard").stat.linkname, "a.txt");
        assert_eq!(get("hard").stat.size, 0);
        assert!(get("hard").file.is_none());
        assert_ne!(get("empty").stat.mode & MODE_DIR, 0);
        assert_eq!(get("empty").stat.size, 0);
    }

    #[test]
    fn excludes_with_exceptions_send_the_parents_they_need() {
        let dir = tree();
        let f = WalkFilter::new(
            dir.path(),
            &[],
            &[
                "node_modules".into(),
                "keep".into(),
                "!keep/**/*.txt".into(),
                "**/*.d".into(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            paths(dir.path(), &f),
            vec![
                "B.txt",
                "Dockerfile",
                "a",
                "a/b",
                "a/b/c.txt",
                "a/z.txt",
                "a.txt",
                "empty",
                "hard",
                "h\u{e9}.txt",
                "keep",
                "keep/sub",
                "keep/sub/y.txt",
                "link",
            ]
        );
    }

    #[test]
    fn includes_and_follow_paths_select_only_what_was_asked() {
        let dir = tree();
        let f = WalkFilter::new(dir.path(), &["a/b".into()], &[], &["link".into()]).unwrap();
        // "link" is followed to "a.txt".
        assert_eq!(
            paths(dir.path(), &f),
            vec!["a", "a/b", "a/b/c.txt", "a.txt", "link"]
        );
        let f = WalkFilter::new(
            dir.path(),
            &[],
            &[],
            &["Dockerfile".into(), ".dockerignore".into()],
        )
        .unwrap();
        assert_eq!(paths(dir.path(), &f), vec!["Dockerfile"]);
    }
}
