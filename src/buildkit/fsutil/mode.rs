//! File modes on fsutil's wire: Go's `os.FileMode` bits, not unix `st_mode`.
//!
//! Go keeps the file type in the high bits (dir 1<<31, symlink 1<<27, ...) and the
//! permission bits in 0o777; setuid/setgid/sticky move up too. `go_mode` turns local
//! metadata into the wire form, `unix_mode` turns a wire mode back into `st_mode`.

use std::os::unix::fs::MetadataExt;

pub const MODE_DIR: u32 = 1 << 31;
pub const MODE_APPEND: u32 = 1 << 30;
pub const MODE_EXCLUSIVE: u32 = 1 << 29;
pub const MODE_TEMPORARY: u32 = 1 << 28;
pub const MODE_SYMLINK: u32 = 1 << 27;
pub const MODE_DEVICE: u32 = 1 << 26;
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
pub const MODE_SOCKET: u32 = 1 << 24;
pub const MODE_SETUID: u32 = 1 << 23;
pub const MODE_SETGID: u32 = 1 << 22;
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
pub const MODE_STICKY: u32 = 1 << 20;
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// Go's `ModePerm`.
pub const MODE_PERM: u32 = 0o777;
/// Every type bit: a mode with none of these is a regular file.
pub const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// The Go `FileMode` of a local file (from `symlink_metadata`: a symlink stays one).
pub fn go_mode(meta: &std::fs::Metadata) -> u32 {
    go_mode_from_unix(meta.mode())
}

/// Unix `st_mode` to Go `FileMode`, as Go's `os.Lstat` computes it.
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut go = st_mode & MODE_PERM;
    go |= match st_mode & S_IFMT {
        S_IFBLK => MODE_DEVICE,
        S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        S_IFDIR => MODE_DIR,
        S_IFIFO => MODE_NAMED_PIPE,
        S_IFLNK => MODE_SYMLINK,
        S_IFSOCK => MODE_SOCKET,
        _ => 0,
    };
    if st_mode & S_ISUID != 0 {
        go |= MODE_SETUID;
    }
    if st_mode & S_ISGID != 0 {
        go |= MODE_SETGID;
    }
    if st_mode & S_ISVTX != 0 {
        go |= MODE_STICKY;
    }
    go
}

/// Go `FileMode` to unix `st_mode` (file type bits included), for creating what a
/// STAT describes.
pub fn unix_mode(go: u32) -> u32 {
    let mut st = go & MODE_PERM;
    st |= if go & MODE_DIR != 0 {
        S_IFDIR
    } else if go & MODE_SYMLINK != 0 {
        S_IFLNK
    } else if go & MODE_DEVICE != 0 {
        if go & MODE_CHAR_DEVICE != 0 {
            S_IFCHR
        } else {
            S_IFBLK
        }
    } else if go & MODE_NAMED_PIPE != 0 {
        S_IFIFO
    } else if go & MODE_SOCKET != 0 {
        S_IFSOCK
    } else {
        S_IFREG
    };
    if go & MODE_SETUID != 0 {
        st |= S_ISUID;
    }
    if go & MODE_SETGID != 0 {
        st |= S_ISGID;
    }
    if go & MODE_STICKY != 0 {
        st |= S_ISVTX;
    }
    st
}

/// The permission and special bits of a Go mode as `chmod` takes them (no type bits).
pub fn unix_permissions(go: u32) -> u32 {
    unix_mode(go) & !S_IFMT
}

/// True when a Go mode is a regular file (the only kind a receiver may request).
pub fn is_regular(go: u32) -> bool {
    go & MODE_TYPE == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn types_and_special_bits_map_both_ways() {
        let cases = [
            (S_IFREG | 0o644, 0o644),
            (S_IFREG | 0o755, 0o755),
            (S_IFDIR | 0o755, MODE_DIR | 0o755),
            (S_IFLNK | 0o777, MODE_SYMLINK | 0o777),
            (S_IFIFO | 0o600, MODE_NAMED_PIPE | 0o600),
            (S_IFSOCK | 0o755, MODE_SOCKET | 0o755),
            (S_IFBLK | 0o660, MODE_DEVICE | 0o660),
            (S_IFCHR | 0o620, MODE_DEVICE | MODE_CHAR_DEVICE | 0o620),
            (S_IFREG | S_ISUID | 0o755, MODE_SETUID | 0o755),
            (
                S_IFDIR | S_ISGID | 0o2775 & 0o777,
                MODE_DIR | MODE_SETGID | 0o775,
            ),
            (S_IFDIR | S_ISVTX | 0o777, MODE_DIR | MODE_STICKY | 0o777),
        ];
        for (st, go) in cases {
            assert_eq!(go_mode_from_unix(st), go, "st_mode {st:o}");
            assert_eq!(unix_mode(go), st, "go mode {go:#x}");
        }
        assert!(is_regular(0o644));
        assert!(!is_regular(MODE_DIR | 0o755));
        assert!(!is_regular(MODE_SYMLINK | 0o777));
        assert_eq!(unix_permissions(MODE_DIR | MODE_SETGID | 0o750), 0o2750);
    }

    #[test]
    fn local_files_read_as_go_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.sh");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("run.sh", dir.path().join("link")).unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(dir.path().join(p)).unwrap();
        assert_eq!(go_mode(&meta("run.sh")), 0o751);
        assert_eq!(go_mode(&meta("link")) & MODE_TYPE, MODE_SYMLINK);
        assert_eq!(
            go_mode(&std::fs::metadata(dir.path()).unwrap()) & MODE_TYPE,
            MODE_DIR
        );
    }
}
