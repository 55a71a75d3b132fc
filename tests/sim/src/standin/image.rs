//! The image archives the stand-in buildctl exports (`type=docker|oci|tar`).
//!
//! The single layer's bytes are the simkit SOURCE pattern streamed from the
//! buildkitd that served the build; everything else (config, manifest, index,
//! docker's manifest.json) is small JSON computed up front, so the archive can be
//! written as head + streamed layer + tail and its digests are deterministic.

use sha2::{Digest, Sha256};

use super::record::{hex, sha256_hex};
use super::tar;
use crate::buildkitd::pattern_byte;

/// The kind of archive an exporter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// docker-archive: manifest.json with RepoTags, plus the OCI layout files.
    Docker,
    /// OCI layout: index.json names the image through annotations.
    Oci,
    /// A plain tarball of the root filesystem (one file).
    Tar,
}

/// sha256 (hex) of the first `len` bytes of the simkit SOURCE pattern.
pub fn pattern_sha256(len: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut i = 0u64;
    while i < len {
        let n = (buf.len() as u64).min(len - i) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(i + k as u64);
        }
        h.update(&buf[..n]);
        i += n as u64;
    }
    hex(&h.finalize())
}

/// A reference as docker prints it: `docker.io/library/` dropped, `:latest` added
/// when there is neither tag nor digest.
pub fn familiar_name(name: &str) -> String {
    let n = name.trim();
    let n = n
        .strip_prefix("docker.io/library/")
        .or_else(|| n.strip_prefix("index.docker.io/library/"))
        .or_else(|| n.strip_prefix("docker.io/"))
        .or_else(|| n.strip_prefix("index.docker.io/"))
        .unwrap_or(n);
    if n.contains('@') {
        return n.to_string();
    }
    let last = n.rsplit('/').next().unwrap_or(n);
    if last.contains(':') {
        n.to_string()
    } else {
        format!("{n}:latest")
    }
}

/// A reference fully qualified (`docker.io/library/foo:latest`).
pub fn full_name(name: &str) -> String {
    let f = familiar_name(name);
    let first = f.split('/').next().unwrap_or("");
    let has_domain =
        f.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        f
    } else if f.contains('/') {
        format!("docker.io/{f}")
    } else {
        format!("docker.io/library/{f}")
    }
}

/// Everything about one exported image except the layer's bytes.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// Names from the exporter's `name=` attribute, as given.
    pub names: Vec<String>,
    pub layer_len: u64,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl ImagePlan {
    /// Plan an image whose layer is `layer_len` pattern bytes. `labels` end up in the
    /// image config, so different build inputs give different digests.
    pub fn new(names: Vec<String>, layer_len: u64, labels: &serde_json::Value) -> ImagePlan {
        let layer_digest = pattern_sha256(layer_len);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        }))
        .unwrap();
        let config_digest = sha256_hex(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer_len,
            }],
        }))
        .unwrap();
        let manifest_digest = sha256_hex(&manifest);
        ImagePlan {
            names,
            layer_len,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }

    fn layer_path(&self) -> String {
        format!("blobs/sha256/{}", self.layer_digest)
    }

    /// Archive bytes before the layer content (ending with the layer's header).
    pub fn head(&self, kind: ArchiveKind) -> Vec<u8> {
        let mut out = Vec::new();
        match kind {
            ArchiveKind::Tar => {
                out.extend_from_slice(&tar::header("simkit/rootfs.bin", self.layer_len));
            }
            ArchiveKind::Docker | ArchiveKind::Oci => {
                tar::push_file(&mut out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
                tar::push_file(
                    &mut out,
                    &format!("blobs/sha256/{}", self.config_digest),
                    &self.config,
                );
                tar::push_file(
                    &mut out,
                    &format!("blobs/sha256/{}", self.manifest_digest),
                    &self.manifest,
                );
                out.extend_from_slice(&tar::header(&self.layer_path(), self.layer_len));
            }
        }
        out
    }

    /// Archive bytes after the layer content (padding, index files, trailer).
    pub fn tail(&self, kind: ArchiveKind) -> Vec<u8> {
        let mut out = vec![0u8; tar::padding(self.layer_len)];
        if kind != ArchiveKind::Tar {
            let mut manifests = Vec::new();
            let desc = |ann: Option<serde_json::Value>| {
                let mut d = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", self.manifest_digest),
                    "size": self.manifest.len(),
                });
                if let Some(a) = ann {
                    d["annotations"] = a;
                }
                d
            };
            if self.names.is_empty() {
                manifests.push(desc(None));
            }
            for n in &self.names {
                manifests.push(desc(Some(serde_json::json!({
                    "io.containerd.image.name": full_name(n),
                    "org.opencontainers.image.ref.name": familiar_name(n)
                        .rsplit_once(':')
                        .map(|(_, t)| t.to_string())
                        .unwrap_or_default(),
                }))));
            }
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            }))
            .unwrap();
            tar::push_file(&mut out, "index.json", &index);
            if kind == ArchiveKind::Docker {
                let tags: Vec<String> = self.names.iter().map(|n| familiar_name(n)).collect();
                let mj = serde_json::to_vec(&serde_json::json!([{
                    "Config": format!("blobs/sha256/{}", self.config_digest),
                    "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(tags) },
                    "Layers": [self.layer_path()],
                }]))
                .unwrap();
                tar::push_file(&mut out, "manifest.json", &mj);
            }
        }
        out.extend_from_slice(&tar::TRAILER);
        out
    }
}

/// What `docker load` would report for an input: the tags it loads, or the image
/// ID when it loads an untagged image. `None` when the input is not an archive.
pub fn inspect_archive(data: &[u8]) -> Option<Result<Vec<String>, String>> {
    let files = tar::files(data)?;
    let get = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| *b);
    if let Some(mj) = get("manifest.json") {
        let v: serde_json::Value = serde_json::from_slice(mj).ok()?;
        let mut tags = Vec::new();
        let mut config = None;
        for m in v.as_array()? {
            for t in m["RepoTags"].as_array().into_iter().flatten() {
                if let Some(t) = t.as_str() {
                    tags.push(t.to_string());
                }
            }
            config = config.or_else(|| m["Config"].as_str().map(str::to_string));
        }
        if !tags.is_empty() {
            return Some(Ok(tags));
        }
        let id = config
            .and_then(|c| get(&c).map(sha256_hex))
            .unwrap_or_else(|| sha256_hex(data));
        return Some(Err(format!("sha256:{id}")));
    }
    if let Some(ix) = get("index.json") {
        let v: serde_json::Value = serde_json::from_slice(ix).ok()?;
        let tags: Vec<String> = v["manifests"]
            .as_array()?
            .iter()
            .filter_map(|m| m["annotations"]["io.containerd.image.name"].as_str())
            .map(familiar_name)
            .collect();
        if !tags.is_empty() {
            return Some(Ok(tags));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(familiar_name("foo"), "foo:latest");
        assert_eq!(familiar_name("docker.io/library/foo:1"), "foo:1");
        assert_eq!(familiar_name("docker.io/me/foo"), "me/foo:latest");
        assert_eq!(
            familiar_name("localhost:5000/a/b"),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(familiar_name("reg:5000/a:v2"), "reg:5000/a:v2");
        assert_eq!(full_name("foo"), "docker.io/library/foo:latest");
        assert_eq!(full_name("me/foo:1"), "docker.io/me/foo:1");
        assert_eq!(full_name("reg.io/foo:1"), "reg.io/foo:1");
    }

    #[test]
    fn archive_loads() {
        let plan = ImagePlan::new(
            vec!["app:dev".into(), "x/y".into()],
            1000,
            &serde_json::json!({}),
        );
        for kind in [ArchiveKind::Docker, ArchiveKind::Oci] {
            let mut a = plan.head(kind);
            a.extend((0..1000u64).map(pattern_byte));
            a.extend(plan.tail(kind));
            let tags = inspect_archive(&a).unwrap().unwrap();
            assert_eq!(tags, vec!["app:dev", "x/y:latest"], "{kind:?}");
            let files = tar::files(&a).unwrap();
            let layer = files
                .iter()
                .find(|(n, _)| n.ends_with(&plan.layer_digest))
                .unwrap();
            assert_eq!(sha256_hex(layer.1), plan.layer_digest);
        }
        let untagged = ImagePlan::new(vec![], 10, &serde_json::json!({}));
        let mut a = untagged.head(ArchiveKind::Docker);
        a.extend((0..10u64).map(pattern_byte));
        a.extend(untagged.tail(ArchiveKind::Docker));
        assert_eq!(
            inspect_archive(&a).unwrap().unwrap_err(),
            format!("sha256:{}", untagged.config_digest)
        );
        assert!(inspect_archive(b"not a tar").is_none());
    }
}
