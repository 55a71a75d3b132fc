//! `moby.filesync.v1.FileSync/DiffCopy`: the daemon pulls a local directory (the
//! build context, the Dockerfile's directory, a named context) by its dir name; we
//! are the diffcopy sender, filtered by the patterns in the request's metadata.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard_buildkit_proto::fsutil::types::Packet;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSync;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::buildkit::fsutil::send::send_dir;
use crate::buildkit::fsutil::walk::WalkFilter;

/// Dir names the dockerfile frontend asks for.
pub const DIR_CONTEXT: &str = "context";
pub const DIR_DOCKERFILE: &str = "dockerfile";

#[derive(Debug, Clone, Default)]
pub struct FileSyncService {
    dirs: HashMap<String, PathBuf>,
}

impl FileSyncService {
    /// `dirs`: dir name -> local directory.
    pub fn new(dirs: HashMap<String, PathBuf>) -> FileSyncService {
        FileSyncService { dirs }
    }
}

/// Every value of a multi-valued key; since v0.12 a non-ASCII value is
/// URL-query-escaped and flagged by `<key>-encoded: 1`.
pub fn metadata_values(md: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = md
        .get(format!("{key}-encoded").as_str())
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "1");
    md.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            if encoded {
                query_unescape(v)
            } else {
                v.to_string()
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape` (`+` is a space, `%XX` a byte); a bad escape stays as is.
fn query_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = ReceiverStream<Result<Packet, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let md = request.metadata();
        let name = metadata_values(md, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let Some(root) = self.dirs.get(&name).cloned() else {
            let known: Vec<&String> = self.dirs.keys().collect();
            return Err(Status::not_found(format!(
                "no local directory named {name:?} in this build (have {known:?}); a named context needs --build-context {name}=DIR"
            )));
        };
        let includes = metadata_values(md, "include-patterns");
        let excludes = metadata_values(md, "exclude-patterns");
        let followpaths = metadata_values(md, "followpaths");
        let filter = WalkFilter::new(&root, &includes, &excludes, &followpaths)
            .map_err(|e| Status::invalid_argument(format!("{name}: {e}")))?;
        crate::log::debug(
            1,
            format!(
                "filesync {name}: {} include, {} exclude, {} follow patterns",
                includes.len(),
                excludes.len(),
                followpaths.len()
            ),
        );
        let incoming = request.into_inner();
        let (out, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let errors = out.clone();
            match send_dir(root, filter, incoming, out).await {
                Ok(stats) => crate::log::debug(
                    1,
                    format!(
                        "filesync {name}: {} entries, {} files requested, {} bytes sent",
                        stats.entries, stats.files_sent, stats.bytes_sent
                    ),
                ),
                Err(status) => {
                    let _ = errors.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type TarStreamStream = tokio_stream::Empty<Result<Packet, Status>>;

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented(
            "FileSync/TarStream is not served: use DiffCopy",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_values_are_unescaped_only_when_flagged() {
        let mut md = MetadataMap::new();
        md.append("exclude-patterns", "caf%C3%A9+x".parse().unwrap());
        md.append("exclude-patterns", "plain".parse().unwrap());
        md.append("include-patterns", "caf%C3%A9".parse().unwrap());
        md.insert("exclude-patterns-encoded", "1".parse().unwrap());
        assert_eq!(
            metadata_values(&md, "exclude-patterns"),
            vec!["caf\u{e9} x", "plain"]
        );
        assert_eq!(metadata_values(&md, "include-patterns"), vec!["caf%C3%A9"]);
        assert!(metadata_values(&md, "followpaths").is_empty());
        assert_eq!(query_unescape("100%"), "100%");
    }
}
