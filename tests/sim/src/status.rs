//! `Status` objects and HTTP responses shaped like the apiserver's.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub type Body = Full<Bytes>;
pub type Resp = Response<Body>;

/// A 200 JSON response.
pub fn json_ok(value: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec(value).expect("serializable");
    raw(StatusCode::OK, "application/json", body)
}

/// Any response with a body and content type.
pub fn raw(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(code)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-cache, private")
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// A failure `Status` JSON.
pub fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

/// A failure `Status` as an HTTP response with that code.
pub fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let v = status_json(code, reason, message, details);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    raw(
        code,
        "application/json",
        serde_json::to_vec(&v).expect("json"),
    )
}

/// Reason phrase the apiserver uses for an HTTP code (`metav1.StatusReason`).
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

pub fn unauthorized() -> Resp {
    failure(401, "Unauthorized", "Unauthorized", None)
}

pub fn bad_request(message: &str) -> Resp {
    failure(400, "BadRequest", message, None)
}

/// `pods "x" not found`, `namespaces "x" not found`.
pub fn not_found(kind: &str, name: &str) -> Resp {
    failure(
        404,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

/// The apiserver's answer for a path it does not serve.
pub fn no_route() -> Resp {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

pub fn method_not_allowed() -> Resp {
    failure(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        Some(json!({})),
    )
}

/// What the exec status channel carries when a command exits with `code`.
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}
