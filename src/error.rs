//! The one error type of edgemeter. Every failure a caller can see is rendered in
//! OpenAI's error shape so the official SDKs surface it unchanged.

use serde::Serialize;
use std::rc::Rc;

/// Where a failure came from, so logs and metrics can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The caller sent something we refuse (bad key, bad JSON, over quota).
    Downstream,
    /// The upstream AI provider failed or could not be reached.
    Upstream,
    /// A fault inside edgemeter itself.
    Internal,
}

/// The failure underneath an error, kept whole: `source()` reaches it and logs show it,
/// where a string would lose its type. Behind one thin pointer, so every `Result` that
/// carries an `ApiError` stays small.
#[derive(Clone)]
pub struct Cause(Rc<Box<dyn std::error::Error>>);

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Causes compare equal whatever they are: two errors with causes compare by what they
/// say. (An error with a cause still differs from one without.)
impl PartialEq for Cause {
    fn eq(&self, _: &Cause) -> bool {
        true
    }
}

impl Eq for Cause {}

/// An error with the HTTP status, OpenAI `type`/`code`/`param`, optional retry hint, and
/// the failure that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub origin: Origin,
    /// Seconds until retrying can succeed; becomes `Retry-After`.
    pub retry_after_s: Option<u64>,
    pub cause: Option<Cause>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: Option<&'a str>,
    param: Option<&'a str>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code: Some(code.to_string()),
            param: None,
            message: message.into(),
            origin: Origin::Downstream,
            retry_after_s: None,
            cause: None,
        }
    }

    /// An internal error that is `cause` itself: its text is the message.
    pub fn unexpected(cause: impl std::error::Error + 'static) -> Self {
        Self::internal(cause.to_string()).caused_by(cause)
    }

    /// Keeps the failure underneath: `source()` answers it.
    pub fn caused_by(mut self, cause: impl std::error::Error + 'static) -> Self {
        self.cause = Some(Cause(Rc::new(Box::new(cause))));
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", code, message)
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "invalid_json",
            format!("We could not parse the JSON body of your request: {detail}"),
        )
    }

    pub fn unknown_model(model: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or has no price in this plan's catalog."),
        )
        .with_param("model")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "invalid_request_error", "invalid_api_key", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "invalid_request_error", "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", "not_found", message)
    }

    /// The thing asked about existed but is over (a settled reservation).
    pub fn gone(code: &str, message: impl Into<String>) -> Self {
        Self::new(410, "invalid_request_error", code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(409, "invalid_request_error", code, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the maximum of {limit} bytes."),
        )
    }

    /// A quota rejection: `rate_limit_exceeded` for windows, `insufficient_quota` for
    /// period budgets, always with `Retry-After`.
    pub fn quota(kind: &'static str, message: String, retry_after_s: u64) -> Self {
        let mut e = Self::new(429, kind, kind, message);
        e.retry_after_s = Some(retry_after_s);
        e
    }

    pub fn upstream(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, "api_error", "upstream_error", message).with_origin(Origin::Upstream)
    }

    /// Storage or a dependency is unavailable right now; retrying later can succeed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(503, "api_error", "service_unavailable", message)
            .with_origin(Origin::Internal);
        e.retry_after_s = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "api_error", "internal_error", message).with_origin(Origin::Internal)
    }

    /// The JSON body: `{"error":{"message","type","code","param"}}`.
    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                code: self.code.as_deref(),
                param: self.param.as_deref(),
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".into())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|c| &**c.0)
    }
}

/// A catalog problem with the JSON path where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "catalog {}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::unknown_model("gpt-9");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
        assert_eq!(e.status, 400);
    }

    #[test]
    fn an_error_keeps_its_cause_whole() {
        use std::error::Error;
        let parse = serde_json::from_str::<u8>("x").unwrap_err();
        let e = ApiError::internal(format!("reading: {parse}")).caused_by(parse);
        let cause = e.source().expect("a cause");
        assert!(cause.downcast_ref::<serde_json::Error>().is_some());
        assert!(e.message.starts_with("reading: "));
        assert!(ApiError::internal("plain").source().is_none());
    }

    #[test]
    fn quota_error_carries_retry_after() {
        let e = ApiError::quota("rate_limit_exceeded", "slow down".into(), 7);
        assert_eq!((e.status, e.retry_after_s), (429, Some(7)));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
    }
}
