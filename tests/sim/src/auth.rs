//! Bearer-token authentication and RBAC-like authorization with the apiserver's
//! 401 / 403 answers.

use serde_json::json;

use crate::config::{Rule, UserConfig};
use crate::status::{failure, Resp};

/// The user a bearer token in `Authorization` belongs to.
pub fn authenticate<'a>(header: Option<&str>, users: &'a [UserConfig]) -> Option<&'a UserConfig> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    users.iter().find(|u| u.token == token)
}

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    /// `pods`, `pods/exec`, `pods/portforward`, `namespaces`.
    pub resource: &'a str,
    /// None = cluster scope.
    pub namespace: Option<&'a str>,
    /// The object's name, when the request names one.
    pub name: Option<&'a str>,
}

fn rule_allows(rule: &Rule, a: &Attributes) -> bool {
    let verb_ok = rule.verbs.iter().any(|v| v == "*" || v == a.verb);
    let base = a.resource.split('/').next().unwrap_or(a.resource);
    let resource_ok = rule.resources.iter().any(|r| {
        r == "*"
            || r == a.resource
            || (a.resource.contains('/') && r.strip_suffix("/*") == Some(base))
    });
    let ns_ok = match a.namespace {
        None => rule.namespaces.is_empty(),
        Some(ns) => rule.namespaces.is_empty() || rule.namespaces.iter().any(|n| n == ns),
    };
    verb_ok && resource_ok && ns_ok
}

/// Whether the user's rules allow the request.
pub fn allowed(user: &UserConfig, a: &Attributes) -> bool {
    user.rules.iter().any(|r| rule_allows(r, a))
}

/// The apiserver's 403 for a denied request.
pub fn forbidden(user: &str, a: &Attributes) -> Resp {
    let base = a.resource.split('/').next().unwrap_or(a.resource);
    // The workload kinds live in API groups (statefulsets in "apps", roles in rbac's).
    let group = crate::objects::KINDS
        .iter()
        .find(|k| k.plural == base)
        .map(|k| k.group)
        .unwrap_or("");
    let qualified = if group.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{group}")
    };
    let why = match a.namespace {
        Some(ns) => format!(
            "User \"{user}\" cannot {} resource \"{}\" in API group \"{group}\" in the namespace \"{ns}\"",
            a.verb, a.resource
        ),
        None => format!(
            "User \"{user}\" cannot {} resource \"{}\" in API group \"{group}\" at the cluster scope",
            a.verb, a.resource
        ),
    };
    let mut details = json!({"kind": base});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    let message = match a.name {
        Some(name) => {
            details["name"] = json!(name);
            format!("{qualified} \"{name}\" is forbidden: {why}")
        }
        None => format!("{qualified} is forbidden: {why}"),
    };
    failure(403, "Forbidden", &message, Some(details))
}

/// The 403 to answer when the user may not do this; None when allowed.
pub fn refusal(user: &UserConfig, a: &Attributes) -> Option<Resp> {
    (!allowed(user, a)).then(|| forbidden(&user.name, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn user(rules: Vec<Rule>) -> UserConfig {
        UserConfig {
            name: "x".into(),
            token: "t".into(),
            rules,
        }
    }

    fn attrs<'a>(verb: &'a str, resource: &'a str, ns: Option<&'a str>) -> Attributes<'a> {
        Attributes {
            verb,
            resource,
            namespace: ns,
            name: None,
        }
    }

    #[test]
    fn tokens() {
        let users = vec![user(vec![])];
        assert!(authenticate(Some("Bearer t"), &users).is_some());
        assert!(authenticate(Some("bearer  t "), &users).is_some());
        assert!(authenticate(Some("Bearer u"), &users).is_none());
        assert!(authenticate(Some("Basic t"), &users).is_none());
        assert!(authenticate(Some("Bearer "), &users).is_none());
        assert!(authenticate(None, &users).is_none());
    }

    #[test]
    fn rules() {
        let admin = user(vec![Rule::all()]);
        assert!(allowed(&admin, &attrs("create", "pods/exec", Some("a"))));
        assert!(allowed(&admin, &attrs("list", "pods", None)));

        let reader = user(vec![Rule::new(&["get", "list"], &["pods"])]);
        assert!(allowed(&reader, &attrs("list", "pods", Some("a"))));
        assert!(allowed(&reader, &attrs("list", "pods", None)));
        assert!(!allowed(&reader, &attrs("create", "pods", Some("a"))));
        assert!(!allowed(&reader, &attrs("create", "pods/exec", Some("a"))));
        assert!(!allowed(&reader, &attrs("get", "pods/exec", Some("a"))));
        assert!(!allowed(&reader, &attrs("list", "namespaces", None)));

        let sub = user(vec![Rule::new(&["*"], &["pods/*"])]);
        assert!(allowed(
            &sub,
            &attrs("create", "pods/portforward", Some("a"))
        ));
        assert!(!allowed(&sub, &attrs("list", "pods", Some("a"))));

        let scoped = user(vec![Rule::new(&["list"], &["pods"]).in_namespaces(&["ns1"])]);
        assert!(allowed(&scoped, &attrs("list", "pods", Some("ns1"))));
        assert!(!allowed(&scoped, &attrs("list", "pods", Some("ns2"))));
        assert!(!allowed(&scoped, &attrs("list", "pods", None)));

        assert!(!allowed(&user(vec![]), &attrs("get", "pods", Some("a"))));
    }

    async fn body(r: Resp) -> serde_json::Value {
        let b = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn forbidden_messages_match_the_apiserver() {
        let a = Attributes {
            verb: "create",
            resource: "pods/exec",
            namespace: Some("ns1"),
            name: Some("buildkitd-0"),
        };
        let r = forbidden("noexec", &a);
        assert_eq!(r.status(), 403);
        let v = body(r).await;
        assert_eq!(
            v["message"],
            "pods \"buildkitd-0\" is forbidden: User \"noexec\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"ns1\""
        );
        assert_eq!(v["reason"], "Forbidden");
        assert_eq!(v["details"], json!({"name": "buildkitd-0", "kind": "pods"}));

        let v = body(forbidden("x", &attrs("list", "pods", Some("ns1")))).await;
        assert_eq!(
            v["message"],
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"ns1\""
        );
        let v = body(forbidden("x", &attrs("list", "pods", None))).await;
        assert_eq!(
            v["message"],
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
        );
    }
}
