//! Headers in both directions pass by allowlist, and provider errors are rewritten so
//! nothing about the operator's provider account (its key, org, project or shared rate
//! limits) reaches a customer.

use crate::error::ApiError;
use serde_json::Value;

/// Request headers forwarded as they are, on every route.
const REQUEST_ALLOWED: [&str; 2] = ["content-type", "accept"];

/// Response headers passed back to the client.
const RESPONSE_ALLOWED: [&str; 4] = [
    "content-type",
    "content-disposition",
    "x-request-id",
    "request-id",
];

/// Headers no catalog setting can forward: credentials, the account's own selectors, and
/// per-hop framing.
pub const NEVER_FORWARDED: [&str; 11] = [
    "authorization",
    "x-api-key",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "openai-organization",
    "openai-project",
    "idempotency-key",
    "anthropic-beta",
];

/// What the operator allows beyond the built-in lists (the catalog's `proxy` section).
pub struct HeaderPolicy<'a> {
    pub extra: &'a [String],
    pub anthropic_beta: &'a [String],
    pub anthropic: bool,
}

impl<'a> HeaderPolicy<'a> {
    /// The policy for a request to `path`, under the catalog's proxy settings.
    pub fn for_path(proxy: &'a crate::surface::settings::ProxySettings, path: &str) -> Self {
        HeaderPolicy {
            extra: &proxy.request_headers,
            anthropic_beta: &proxy.anthropic_beta,
            anthropic: crate::limits::Provider::for_path(path)
                == crate::limits::Provider::Anthropic,
        }
    }
}

/// The client's headers worth reading: no other can be forwarded, so the rest (an
/// SDK sends a dozen) is never read out of the runtime.
pub fn request_names<'a>(policy: &'a HeaderPolicy<'a>) -> impl Iterator<Item = &'a str> {
    let anthropic = ["anthropic-version", "anthropic-beta"];
    REQUEST_ALLOWED
        .into_iter()
        .chain(anthropic.into_iter().filter(|_| policy.anthropic))
        .chain(policy.extra.iter().map(String::as_str))
}

/// The provider's headers worth reading: those that may pass, and those edgemeter
/// reads itself.
pub const RESPONSE_READ: [&str; 6] = [
    RESPONSE_ALLOWED[0],
    RESPONSE_ALLOWED[1],
    RESPONSE_ALLOWED[2],
    RESPONSE_ALLOWED[3],
    "retry-after",
    "content-length",
];

/// The request headers to forward, from the client's (lower-cased names).
pub fn forward_request<'h>(
    incoming: impl IntoIterator<Item = (String, String)>,
    policy: &HeaderPolicy<'h>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in incoming {
        let name = name.to_ascii_lowercase();
        if NEVER_FORWARDED.contains(&name.as_str()) {
            if name == "anthropic-beta" && policy.anthropic {
                let kept: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|b| policy.anthropic_beta.iter().any(|a| a == b))
                    .collect();
                if !kept.is_empty() {
                    out.push((name, kept.join(",")));
                }
            }
            continue;
        }
        let allowed = REQUEST_ALLOWED.contains(&name.as_str())
            || (policy.anthropic && name == "anthropic-version")
            || policy.extra.iter().any(|e| e.eq_ignore_ascii_case(&name));
        if allowed {
            out.push((name, value));
        }
    }
    out
}

/// The provider's response headers that may reach the client.
pub fn pass_response(
    upstream: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    upstream
        .into_iter()
        .filter(|(k, _)| RESPONSE_ALLOWED.contains(&k.to_ascii_lowercase().as_str()))
        .collect()
}

/// Words that mark a provider message as being about the operator's account.
const ACCOUNT_MARKERS: [&str; 12] = [
    "org-",
    "organization",
    "proj_",
    "project",
    "sk-",
    "api key",
    "api_key",
    "rate limit",
    "ratelimit",
    "per min",
    "quota",
    "tokens per",
];

/// Whether a provider message may say something about the operator's account (or is
/// too long to be sure it does not).
pub fn names_account(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    ACCOUNT_MARKERS.iter().any(|w| lower.contains(w)) || message.len() > 2000
}

/// Whether the provider refused a request itself (4xx, 5xx): it cost nothing, so its
/// reservation is released, unbilled.
pub fn refused_by_provider(status: u16) -> bool {
    status >= 400
}

/// How much of a provider's error answer is read to rewrite it.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A provider's redirect is never followed (it could lead anywhere with the operator's
/// key): its answer is a 502.
pub fn redirect_refused(status: u16) -> Result<(), ApiError> {
    if !(300..400).contains(&status) {
        return Ok(());
    }
    let msg = "The upstream provider answered with a redirect, which edgemeter never follows.";
    Err(ApiError::upstream(502, msg).with_code("upstream_redirect"))
}

/// A buffered answer past `limit` bytes: a 502, never an answer cut short.
pub fn too_large_answer(limit: usize) -> ApiError {
    let msg =
        format!("The upstream answer exceeded the {limit}-byte limit for buffered responses.");
    ApiError::upstream(502, msg).with_code("upstream_too_large")
}

/// A provider error turned into what the customer may see. 401/403 are about the
/// operator's key, 429 about the operator's shared limit; other errors keep the
/// provider's `type`, `code` and `param`, and its message only when it is clean.
pub fn provider_error(status: u16, body: &[u8], retry_after: Option<&str>) -> ApiError {
    match status {
        401 | 403 => {
            let msg = "The upstream provider refused edgemeter's credentials. This is not a problem with your key; the operator has been told.";
            return ApiError::upstream(502, msg).with_code("upstream_auth_error");
        }
        429 => {
            let msg = "The upstream provider is busy. Please retry shortly.";
            let mut e = ApiError::unavailable(msg).with_code("upstream_busy");
            let wait = retry_after.and_then(|s| s.trim().parse::<u64>().ok());
            e.retry_after_s = Some(wait.unwrap_or(1).clamp(1, 600));
            return e;
        }
        _ => {}
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &parsed["error"];
    let text = |v: &Value| v.as_str().map(|s| s.chars().take(120).collect::<String>());
    let message = err["message"].as_str().filter(|m| !names_account(m));
    let generic = format!("The upstream provider refused the request (status {status}).");
    // A provider outage is edgemeter's upstream failing: 502, or 503 when it says so;
    // anything that is not an error status is a broken upstream too.
    let status = match status {
        400..=499 | 503 => status,
        _ => 502,
    };
    let mut e = if status >= 500 {
        ApiError::upstream(status, message.unwrap_or(&generic).to_string())
    } else {
        ApiError::bad_request("upstream_error", message.unwrap_or(&generic).to_string())
    };
    if let Some(kind) = err["type"].as_str().and_then(error_type) {
        e.kind = kind;
    }
    e.code = text(&err["code"]).or(e.code);
    e.param = text(&err["param"]);
    e
}

/// The provider's error `type`, when it is one the SDKs know.
fn error_type(t: &str) -> Option<&'static str> {
    [
        "invalid_request_error",
        "api_error",
        "server_error",
        "not_found_error",
        "permission_error",
        "overloaded_error",
        "request_too_large",
    ]
    .into_iter()
    .find(|k| *k == t)
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
