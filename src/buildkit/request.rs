//! The SolveRequest for the `dockerfile.v0` frontend, from plain options.
//!
//! Exporters go both ways: the first in the old single fields (3/4, all a pre-v0.13
//! daemon reads) and all of them in `Exporters` (13); a server copies 3/4 over only
//! when 13 is empty, so every version sees the same thing.

use std::collections::{BTreeMap, HashMap};

use bollard_buildkit_proto::moby::buildkit::v1::{
    CacheOptions, CacheOptionsEntry, Exporter, SolveRequest,
};

pub const DOCKERFILE_FRONTEND: &str = "dockerfile.v0";
/// The entitlement `--network host` needs.
pub const ENTITLEMENT_NETWORK_HOST: &str = "network.host";

/// The network RUN steps get (docker's `--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

impl NetworkMode {
    pub fn parse(text: &str) -> Option<NetworkMode> {
        match text {
            "default" | "" => Some(NetworkMode::Default),
            "none" => Some(NetworkMode::None),
            "host" => Some(NetworkMode::Host),
            _ => None,
        }
    }
}

/// One exporter as the daemon sees it: its type and attributes. Client-side
/// settings (`dest=`) never go here: the session's FileSend receives the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportEntry {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

/// One cache import or export (`type=registry,ref=...`, `type=inline`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheEntry {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

/// Everything a Dockerfile build asks of the daemon.
#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    /// The Dockerfile's name inside the dockerfile directory (`filename`).
    pub dockerfile_name: String,
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// `linux/amd64` ...; empty = the worker's default.
    pub platforms: Vec<String>,
    pub no_cache: bool,
    pub network: NetworkMode,
    /// `(host, ip)` pairs.
    pub add_hosts: Vec<(String, String)>,
    /// Names of local named contexts (`--build-context NAME=DIR`): each is served by
    /// FileSync under its own dir name.
    pub named_contexts: Vec<String>,
    /// `--opt key=value` passed to the frontend unchanged (last one wins).
    pub frontend_opts: Vec<(String, String)>,
    /// `--allow` entitlements (`network.host`, `security.insecure`).
    pub entitlements: Vec<String>,
    pub exports: Vec<ExportEntry>,
    pub cache_imports: Vec<CacheEntry>,
    pub cache_exports: Vec<CacheEntry>,
}

/// The request for one solve: `reference` is the build's ref (Status uses it),
/// `session_id` the id of the session serving our files.
pub fn solve_request(opts: &SolveOptions, reference: &str, session_id: &str) -> SolveRequest {
    let mut attrs: HashMap<String, String> = HashMap::new();
    if !opts.dockerfile_name.is_empty() {
        attrs.insert("filename".into(), opts.dockerfile_name.clone());
    }
    if let Some(target) = opts.target.as_ref().filter(|t| !t.is_empty()) {
        attrs.insert("target".into(), target.clone());
    }
    for (k, v) in &opts.build_args {
        attrs.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in &opts.labels {
        attrs.insert(format!("label:{k}"), v.clone());
    }
    if !opts.platforms.is_empty() {
        attrs.insert("platform".into(), opts.platforms.join(","));
    }
    if opts.no_cache {
        // Empty means every step; a list would name stages.
        attrs.insert("no-cache".into(), String::new());
    }
    match opts.network {
        NetworkMode::Default => {}
        NetworkMode::None => {
            attrs.insert("force-network-mode".into(), "none".into());
        }
        NetworkMode::Host => {
            attrs.insert("force-network-mode".into(), "host".into());
        }
    }
    if !opts.add_hosts.is_empty() {
        let hosts: Vec<String> = opts
            .add_hosts
            .iter()
            .map(|(h, ip)| format!("{h}={ip}"))
            .collect();
        attrs.insert("add-hosts".into(), hosts.join(","));
    }
    for name in &opts.named_contexts {
        attrs.insert(format!("context:{name}"), format!("local:{name}"));
    }
    // What the frontend needs to know of cache imports (buildctl sends both forms).
    let registry_refs: Vec<&str> = opts
        .cache_imports
        .iter()
        .filter(|c| c.kind == "registry")
        .filter_map(|c| c.attrs.get("ref").map(String::as_str))
        .collect();
    if !registry_refs.is_empty() {
        attrs.insert("cache-from".into(), registry_refs.join(","));
    }
    if !opts.cache_imports.is_empty() {
        attrs.insert(
            "cache-imports".into(),
            cache_imports_json(&opts.cache_imports),
        );
    }
    for (k, v) in &opts.frontend_opts {
        attrs.insert(k.clone(), v.clone());
    }

    let mut entitlements: Vec<String> = Vec::new();
    for e in &opts.entitlements {
        if !entitlements.contains(e) {
            entitlements.push(e.clone());
        }
    }
    if opts.network == NetworkMode::Host
        && !entitlements.iter().any(|e| e == ENTITLEMENT_NETWORK_HOST)
    {
        entitlements.push(ENTITLEMENT_NETWORK_HOST.into());
    }

    let exporters: Vec<Exporter> = opts
        .exports
        .iter()
        .map(|e| Exporter {
            r#type: e.kind.clone(),
            attrs: to_map(&e.attrs),
        })
        .collect();
    let (exporter_deprecated, exporter_attrs_deprecated) = exporters
        .first()
        .map(|e| (e.r#type.clone(), e.attrs.clone()))
        .unwrap_or_default();

    let cache = if opts.cache_imports.is_empty() && opts.cache_exports.is_empty() {
        None
    } else {
        Some(CacheOptions {
            imports: opts.cache_imports.iter().map(cache_entry).collect(),
            exports: opts.cache_exports.iter().map(cache_entry).collect(),
            ..Default::default()
        })
    };

    SolveRequest {
        r#ref: reference.to_string(),
        session: session_id.to_string(),
        frontend: DOCKERFILE_FRONTEND.into(),
        frontend_attrs: attrs,
        exporter_deprecated,
        exporter_attrs_deprecated,
        exporters,
        cache,
        entitlements,
        ..Default::default()
    }
}

fn to_map(attrs: &BTreeMap<String, String>) -> HashMap<String, String> {
    attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn cache_entry(c: &CacheEntry) -> CacheOptionsEntry {
    CacheOptionsEntry {
        r#type: c.kind.clone(),
        attrs: to_map(&c.attrs),
    }
}

/// `cache-imports` as the frontend reads it: a JSON list of `{"Type", "Attrs"}`.
fn cache_imports_json(entries: &[CacheEntry]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|c| serde_json::json!({ "Type": c.kind, "Attrs": c.attrs }))
        .collect();
    serde_json::Value::Array(list).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_dockerfile_option_maps_to_its_frontend_attribute() {
        let opts = SolveOptions {
            dockerfile_name: "build/Dockerfile.dev".into(),
            target: Some("final".into()),
            build_args: vec![("GREETING".into(), "hé llo".into())],
            labels: vec![("org.example.team".into(), "build".into())],
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            no_cache: true,
            network: NetworkMode::None,
            add_hosts: vec![
                ("db".into(), "127.0.0.2".into()),
                ("cache".into(), "127.0.0.3".into()),
            ],
            named_contexts: vec!["assets".into()],
            frontend_opts: vec![("build-arg:GREETING".into(), "from --opt".into())],
            ..Default::default()
        };
        let req = solve_request(&opts, "ref1", "sess1");
        let a = &req.frontend_attrs;
        assert_eq!(req.r#ref, "ref1");
        assert_eq!(req.session, "sess1");
        assert_eq!(req.frontend, "dockerfile.v0");
        assert_eq!(a["filename"], "build/Dockerfile.dev");
        assert_eq!(a["target"], "final");
        // --opt is passed through last: it wins over the flag it names.
        assert_eq!(a["build-arg:GREETING"], "from --opt");
        assert_eq!(a["label:org.example.team"], "build");
        assert_eq!(a["platform"], "linux/amd64,linux/arm64");
        assert_eq!(a["no-cache"], "");
        assert_eq!(a["force-network-mode"], "none");
        assert_eq!(a["add-hosts"], "db=127.0.0.2,cache=127.0.0.3");
        assert_eq!(a["context:assets"], "local:assets");
        assert!(req.entitlements.is_empty());
        assert!(req.cache.is_none());
        assert!(req.exporters.is_empty() && req.exporter_deprecated.is_empty());
    }

    #[test]
    fn defaults_send_no_attribute_the_user_did_not_ask_for() {
        let req = solve_request(
            &SolveOptions {
                dockerfile_name: "Dockerfile".into(),
                ..Default::default()
            },
            "r",
            "s",
        );
        let keys: Vec<&String> = req.frontend_attrs.keys().collect();
        assert_eq!(keys, vec!["filename"]);
    }

    #[test]
    fn host_network_requests_its_entitlement_once() {
        let opts = SolveOptions {
            network: NetworkMode::Host,
            entitlements: vec!["security.insecure".into(), "network.host".into()],
            ..Default::default()
        };
        let req = solve_request(&opts, "r", "s");
        assert_eq!(req.frontend_attrs["force-network-mode"], "host");
        assert_eq!(req.entitlements, vec!["security.insecure", "network.host"]);
        let req = solve_request(
            &SolveOptions {
                network: NetworkMode::Host,
                ..Default::default()
            },
            "r",
            "s",
        );
        assert_eq!(req.entitlements, vec!["network.host"]);
    }

    #[test]
    fn the_exporter_goes_in_the_old_fields_and_the_list() {
        let push = ExportEntry {
            kind: "image".into(),
            attrs: attrs(&[("name", "127.0.0.1:5000/app:1"), ("push", "true")]),
        };
        let tar = ExportEntry {
            kind: "tar".into(),
            attrs: BTreeMap::new(),
        };
        let req = solve_request(
            &SolveOptions {
                exports: vec![push.clone(), tar],
                ..Default::default()
            },
            "r",
            "s",
        );
        assert_eq!(req.exporter_deprecated, "image");
        assert_eq!(
            req.exporter_attrs_deprecated["name"],
            "127.0.0.1:5000/app:1"
        );
        assert_eq!(req.exporter_attrs_deprecated["push"], "true");
        assert_eq!(req.exporters.len(), 2);
        assert_eq!(req.exporters[0].r#type, "image");
        assert_eq!(req.exporters[0].attrs, req.exporter_attrs_deprecated);
        assert_eq!(req.exporters[1].r#type, "tar");
        // On the wire: field 3 holds the type, field 13 the list.
        let bytes = prost::Message::encode_to_vec(&req);
        let decoded: SolveRequest = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, req);
        assert!(bytes
            .windows(7)
            .any(|w| w == [0x1a, 5, b'i', b'm', b'a', b'g', b'e']));
    }

    #[test]
    fn cache_imports_and_exports_reach_the_solver_and_the_frontend() {
        let import = CacheEntry {
            kind: "registry".into(),
            attrs: attrs(&[("ref", "127.0.0.1:5000/app:cache")]),
        };
        let export = CacheEntry {
            kind: "inline".into(),
            attrs: BTreeMap::new(),
        };
        let req = solve_request(
            &SolveOptions {
                cache_imports: vec![import],
                cache_exports: vec![export],
                ..Default::default()
            },
            "r",
            "s",
        );
        let cache = req.cache.unwrap();
        assert_eq!(cache.imports.len(), 1);
        assert_eq!(cache.imports[0].r#type, "registry");
        assert_eq!(cache.imports[0].attrs["ref"], "127.0.0.1:5000/app:cache");
        assert_eq!(cache.exports[0].r#type, "inline");
        assert_eq!(req.frontend_attrs["cache-from"], "127.0.0.1:5000/app:cache");
        let json: serde_json::Value =
            serde_json::from_str(&req.frontend_attrs["cache-imports"]).unwrap();
        assert_eq!(json[0]["Type"], "registry");
        assert_eq!(json[0]["Attrs"]["ref"], "127.0.0.1:5000/app:cache");
    }

    #[test]
    fn network_names_are_dockers() {
        assert_eq!(NetworkMode::parse("none"), Some(NetworkMode::None));
        assert_eq!(NetworkMode::parse("host"), Some(NetworkMode::Host));
        assert_eq!(NetworkMode::parse("default"), Some(NetworkMode::Default));
        assert_eq!(NetworkMode::parse("bridge"), None);
    }
}
