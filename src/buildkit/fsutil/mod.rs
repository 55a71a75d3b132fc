//! fsutil's wire forms: file modes as Go's `os.FileMode`, and the diffcopy protocol
//! (Packets of STAT / REQ / DATA / FIN / ERR) in both directions.

mod disk;
pub mod mode;
pub mod receive;
pub mod send;
pub mod walk;
