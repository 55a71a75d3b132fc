//! The kubeconfig a simulated cluster hands to kubectl and kube-rs: cluster "sim", one
//! user and one context per configured user (named after it), the first one current.

use base64::Engine;
use serde_json::json;

use crate::config::UserConfig;

pub fn render(server: &str, ca_pem: &str, users: &[UserConfig], namespace: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": users.iter().map(|u| json!({"name": u.name, "user": {"token": u.token}})).collect::<Vec<_>>(),
        "contexts": users.iter().map(|u| json!({
            "name": u.name,
            "context": {"cluster": "sim", "user": u.name, "namespace": namespace},
        })).collect::<Vec<_>>(),
        "current-context": users.first().map(|u| u.name.clone()).unwrap_or_default(),
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("kubeconfig yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let mut u = UserConfig::admin();
        u.token = "tok".into();
        let y = render("https://127.0.0.1:1", "PEM", &[u], "ns1");
        let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["current-context"], "admin");
        assert_eq!(v["contexts"][0]["context"]["namespace"], "ns1");
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:1");
    }
}
