//! The stored objects besides pods and namespaces: Services, ConfigMaps,
//! PersistentVolumeClaims, StatefulSets, Roles and RoleBindings, kept as JSON with the
//! server's metadata, and the simplified server-side apply that writes them.
//!
//! Server-side apply, simplified (tests/sim/README.md says the same): the applied
//! configuration becomes the object (no field-by-field merge between managers, no
//! conflicts: `force` is accepted and changes nothing); status is the server's. A write
//! that changes nothing keeps resourceVersion, generation and managedFields, as the real
//! apiserver does for a no-op apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{json, Value};

/// A resource type the store serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub short_names: &'static [&'static str],
}

pub const SERVICES: Kind = Kind {
    plural: "services",
    singular: "service",
    kind: "Service",
    group: "",
    version: "v1",
    short_names: &["svc"],
};
pub const CONFIGMAPS: Kind = Kind {
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    group: "",
    version: "v1",
    short_names: &["cm"],
};
pub const PVCS: Kind = Kind {
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    kind: "PersistentVolumeClaim",
    group: "",
    version: "v1",
    short_names: &["pvc"],
};
pub const STATEFULSETS: Kind = Kind {
    plural: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    group: "apps",
    version: "v1",
    short_names: &["sts"],
};
pub const ROLES: Kind = Kind {
    plural: "roles",
    singular: "role",
    kind: "Role",
    group: "rbac.authorization.k8s.io",
    version: "v1",
    short_names: &[],
};
pub const ROLEBINDINGS: Kind = Kind {
    plural: "rolebindings",
    singular: "rolebinding",
    kind: "RoleBinding",
    group: "rbac.authorization.k8s.io",
    version: "v1",
    short_names: &[],
};

pub const KINDS: [Kind; 6] = [
    SERVICES,
    CONFIGMAPS,
    PVCS,
    STATEFULSETS,
    ROLES,
    ROLEBINDINGS,
];

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `statefulsets.apps`, `services`: how the apiserver names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The kind whose group and plural these are.
    pub fn find(group: &str, plural: &str) -> Option<Kind> {
        KINDS
            .into_iter()
            .find(|k| k.group == group && k.plural == plural)
    }

    /// The object's typed round trip through k8s-openapi (its schema), or why not.
    fn round_trip(&self, v: &Value) -> Result<Value, String> {
        fn rt<T: serde::de::DeserializeOwned + serde::Serialize>(
            v: &Value,
        ) -> Result<Value, String> {
            let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            serde_json::to_value(t).map_err(|e| e.to_string())
        }
        match self.kind {
            "Service" => rt::<Service>(v),
            "ConfigMap" => rt::<ConfigMap>(v),
            "PersistentVolumeClaim" => rt::<PersistentVolumeClaim>(v),
            "StatefulSet" => rt::<StatefulSet>(v),
            "Role" => rt::<Role>(v),
            "RoleBinding" => rt::<RoleBinding>(v),
            _ => Ok(v.clone()),
        }
    }
}

/// A failed request, as the Status the apiserver would answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Value) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    pub fn not_found(kind: &Kind, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
            json!({"name": name, "group": kind.group, "kind": kind.plural}),
        )
    }

    pub fn bad_request(message: String) -> ApiError {
        ApiError::new(400, "BadRequest", message, json!({}))
    }

    fn invalid(kind: &Kind, name: &str, message: String) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", kind.kind),
            json!({"name": name, "group": kind.group, "kind": kind.kind}),
        )
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Created(Value),
    Updated(Value),
    Unchanged(Value),
}

impl Applied {
    pub fn object(&self) -> &Value {
        match self {
            Applied::Created(v) | Applied::Updated(v) | Applied::Unchanged(v) => v,
        }
    }
}

type Key = (&'static str, String, String);

#[derive(Default)]
pub struct ObjectStore {
    objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out (one counter for every object, as etcd's).
    revision: u64,
}

/// Paths (like `.spec.foo`) present in `input` but dropped by the typed round trip:
/// fields the schema does not declare.
pub fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => unknown_fields(v, w, &p, out),
                    // A null is "unset"; the round trip drops it without it being unknown.
                    None if !v.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A DNS-1123 subdomain, what most object names must be.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The parts of an object a write can change (server-set metadata and status dropped).
fn content(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

pub fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl ObjectStore {
    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(kind.plural, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a kind in a namespace (None = all), ordered by namespace and name.
    pub fn list(&self, kind: &Kind, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, n, _), _)| *p == kind.plural && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Check an object sent for `ns`/`name` against its kind, name and schema.
    fn check(kind: &Kind, ns: &str, name: &str, obj: &Value, strict: bool) -> Result<(), ApiError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != kind.api_version() || k != kind.kind {
            return Err(ApiError::bad_request(format!(
                "the body of the request was in an unknown format: apiVersion {api_version:?} \
                 kind {k:?} is not {} {}",
                kind.api_version(),
                kind.kind
            )));
        }
        let meta_name = obj.pointer("/metadata/name").and_then(Value::as_str);
        if meta_name.is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_name.unwrap_or_default()
            )));
        }
        let meta_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        if meta_ns.is_some_and(|n| !n.is_empty() && n != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the \
                 request"
                    .to_string(),
            ));
        }
        if !valid_name(name) {
            return Err(ApiError::invalid(
                kind,
                name,
                format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must \
                     consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        let typed = kind.round_trip(obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                kind.kind, kind.version, kind.kind
            ))
        })?;
        if strict {
            let mut unknown = Vec::new();
            unknown_fields(obj, &typed, "", &mut unknown);
            if !unknown.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "failed to create typed patch object ({ns}/{name}; {}, Kind={}): {}",
                    kind.api_version(),
                    kind.kind,
                    unknown
                        .iter()
                        .map(|p| format!("{p}: field not declared in schema"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Server-side apply of `obj` by `manager` (simplified: see the module's opening).
    /// `now` is the RFC 3339 time for new objects and managedFields.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        kind: &Kind,
        ns: &str,
        name: &str,
        obj: Value,
        manager: &str,
        strict: bool,
        dry_run: bool,
        now: &str,
    ) -> Result<Applied, ApiError> {
        Self::check(kind, ns, name, &obj, strict)?;
        let key = (kind.plural, ns.to_string(), name.to_string());
        let old = self.objects.get(&key).cloned();
        let mut new = obj;
        let meta = new
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata must be an object".into()))?;
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(ns));
        if let Some(old) = &old {
            if content(old) == content(&new) {
                return Ok(Applied::Unchanged(old.clone()));
            }
        }
        let spec_changed = old
            .as_ref()
            .is_none_or(|o| o.get("spec") != new.get("spec"));
        let generation = old
            .as_ref()
            .and_then(|o| o.pointer("/metadata/generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + i64::from(spec_changed);
        let revision = self.revision + 1;
        let meta = new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("metadata set above");
        let created = old
            .as_ref()
            .and_then(|o| o.pointer("/metadata/creationTimestamp").cloned())
            .unwrap_or_else(|| json!(now));
        meta.insert(
            "uid".into(),
            json!(crate::state::object_uid(
                ns,
                &format!("{}/{name}", kind.plural)
            )),
        );
        meta.insert("creationTimestamp".into(), created);
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
        meta.insert("generation".into(), json!(generation));
        meta.insert(
            "managedFields".into(),
            json!([{
                "manager": manager,
                "operation": "Apply",
                "apiVersion": kind.api_version(),
                "time": now,
                "fieldsType": "FieldsV1",
                "fieldsV1": {}
            }]),
        );
        if let Some(status) = old.as_ref().and_then(|o| o.get("status")) {
            new["status"] = status.clone();
        }
        if dry_run {
            return Ok(match old {
                None => Applied::Created(new),
                Some(_) => Applied::Updated(new),
            });
        }
        self.revision = revision;
        self.objects.insert(key, new.clone());
        Ok(match old {
            None => Applied::Created(new),
            Some(_) => Applied::Updated(new),
        })
    }

    /// POST: a new object; 409 when it exists.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        kind: &Kind,
        ns: &str,
        obj: Value,
        manager: &str,
        strict: bool,
        dry_run: bool,
        now: &str,
    ) -> Result<Value, ApiError> {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "",
                "metadata.name: Required value: name or generateName is required".into(),
            ));
        }
        if self.get(kind, ns, &name).is_some() {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.qualified()),
                json!({"name": name, "group": kind.group, "kind": kind.plural}),
            ));
        }
        self.apply(kind, ns, &name, obj, manager, strict, dry_run, now)
            .map(|a| a.object().clone())
    }

    /// Store an object the server itself makes (the StatefulSet controller's claims).
    pub fn insert_owned(&mut self, kind: &Kind, ns: &str, name: &str, obj: Value, now: &str) {
        if self.get(kind, ns, name).is_none() {
            let _ = self.apply(
                kind,
                ns,
                name,
                obj.clone(),
                "kube-controller-manager",
                false,
                false,
                now,
            );
            if let Some(status) = obj.get("status") {
                if let Some(v) =
                    self.objects
                        .get_mut(&(kind.plural, ns.to_string(), name.to_string()))
                {
                    v["status"] = status.clone();
                }
            }
        }
    }

    /// Remove every object in a namespace.
    pub fn delete_namespace(&mut self, ns: &str) {
        self.objects.retain(|(_, n, _), _| n != ns);
    }

    /// Remove an object, returning it.
    pub fn delete(&mut self, kind: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .remove(&(kind.plural, ns.to_string(), name.to_string()))
            .ok_or_else(|| ApiError::not_found(kind, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}},
               "data": {"k": data}})
    }

    #[test]
    fn apply_creates_updates_and_skips_no_ops() {
        let mut s = ObjectStore::default();
        let t = "2026-01-01T00:00:00Z";
        let a = s
            .apply(&CONFIGMAPS, "ns", "c", cm("1"), "m", true, false, t)
            .unwrap();
        assert!(matches!(a, Applied::Created(_)));
        let rv1 = a.object()["metadata"]["resourceVersion"].clone();
        let again = s
            .apply(&CONFIGMAPS, "ns", "c", cm("1"), "m", true, false, t)
            .unwrap();
        assert!(matches!(again, Applied::Unchanged(_)));
        assert_eq!(again.object()["metadata"]["resourceVersion"], rv1);
        let up = s
            .apply(&CONFIGMAPS, "ns", "c", cm("2"), "m", true, false, t)
            .unwrap();
        assert!(matches!(up, Applied::Updated(_)));
        assert_ne!(up.object()["metadata"]["resourceVersion"], rv1);
        assert_eq!(s.get(&CONFIGMAPS, "ns", "c").unwrap()["data"]["k"], "2");
        assert_eq!(s.list(&CONFIGMAPS, Some("ns")).len(), 1);
        assert!(s.list(&CONFIGMAPS, Some("other")).is_empty());
        s.delete(&CONFIGMAPS, "ns", "c").unwrap();
        assert_eq!(s.delete(&CONFIGMAPS, "ns", "c").unwrap_err().code, 404);
    }

    #[test]
    fn dry_run_stores_nothing() {
        let mut s = ObjectStore::default();
        let t = "2026-01-01T00:00:00Z";
        let a = s
            .apply(&CONFIGMAPS, "ns", "c", cm("1"), "m", true, true, t)
            .unwrap();
        assert!(matches!(a, Applied::Created(_)));
        assert!(s.get(&CONFIGMAPS, "ns", "c").is_none());
        assert_eq!(s.revision(), 0);
    }

    #[test]
    fn schema_and_names_are_checked() {
        let mut s = ObjectStore::default();
        let t = "2026-01-01T00:00:00Z";
        let mut bad = cm("1");
        bad["data"]["k"] = json!(5);
        assert_eq!(
            s.apply(&CONFIGMAPS, "ns", "c", bad, "m", true, false, t)
                .unwrap_err()
                .code,
            400
        );
        let mut extra = cm("1");
        extra["spec"] = json!({"x": 1});
        let e = s
            .apply(&CONFIGMAPS, "ns", "c", extra.clone(), "m", true, false, t)
            .unwrap_err();
        assert!(
            e.message.contains(".spec: field not declared in schema"),
            "{}",
            e.message
        );
        assert!(s
            .apply(&CONFIGMAPS, "ns", "c", extra, "m", false, false, t)
            .is_ok());
        assert_eq!(
            s.apply(&CONFIGMAPS, "ns", "d", cm("1"), "m", true, false, t)
                .unwrap_err()
                .code,
            400
        );
        let mut upper = cm("1");
        upper["metadata"]["name"] = json!("C");
        assert_eq!(
            s.apply(&CONFIGMAPS, "ns", "C", upper, "m", true, false, t)
                .unwrap_err()
                .code,
            422
        );
        let mut wrong = cm("1");
        wrong["kind"] = json!("Secret");
        assert_eq!(
            s.apply(&CONFIGMAPS, "ns", "c", wrong, "m", true, false, t)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn create_refuses_an_existing_name() {
        let mut s = ObjectStore::default();
        let t = "2026-01-01T00:00:00Z";
        s.create(&CONFIGMAPS, "ns", cm("1"), "m", true, false, t)
            .unwrap();
        assert_eq!(
            s.create(&CONFIGMAPS, "ns", cm("1"), "m", true, false, t)
                .unwrap_err()
                .code,
            409
        );
    }
}
