//! The Worker's limits and where its requests go, from its settings: each setting's
//! default and bounds in one place. The edge reads the settings and asks here.

/// Default request-body limit: large enough for chat requests with inline images.
pub const MAX_BODY_BYTES: usize = 8 << 20;

/// The largest upstream answer buffered: streams are not buffered and have no cap.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// The largest file upload, the provider's own limit. Uploads stream through, so this
/// bounds what a customer can store, not memory.
pub const MAX_UPLOAD_BYTES: usize = 512 << 20;

/// The largest provider answer kept when a resource call's answer is buffered (a file
/// object, a deletion).
pub const RESOURCE_ANSWER_BYTES: usize = 1 << 20;

/// The largest body of an admin or management call (customers, keys, accounts, grants).
pub const MANAGE_BODY_BYTES: usize = 1 << 20;

/// The largest usage batch the rating endpoint reads before checking its signature (a
/// batch of 500 records is well below it).
pub const INGEST_BODY_BYTES: usize = 4 << 20;

/// Batch signatures older (or newer) than this are refused.
pub const SIGNATURE_TOLERANCE_S: i64 = 300;

/// Tries at setting a counter's alarm before it is left to the next change: an alarm
/// that cannot be set is counted, and any admission, settlement or push sets it again.
pub const ALARM_TRIES: usize = 3;

/// Tries at recording or forgetting a resource on its owner's counter: without the
/// record its owner cannot reach it, and with a stale one it would look owned.
pub const OWNERSHIP_TRIES: usize = 2;

/// Customers one shard call reconciles (each takes a counter and a Ledger call, so a
/// call stays far below a Worker's subrequest limit), and the Ledger calls in flight.
pub const RECONCILE_PAGE: usize = 200;
pub const RECONCILE_AT_ONCE: usize = 8;

/// Flush registry shards when `FLUSH_SHARDS` is unset.
pub const FLUSH_SHARDS: u32 = 16;

fn bytes(setting: Option<&str>, default: usize) -> usize {
    setting
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Refuses (413) a body whose declared length is past `limit` before reading any of it.
pub fn declared_within(
    declared: Option<usize>,
    limit: usize,
) -> Result<(), crate::error::ApiError> {
    match declared {
        Some(length) if length > limit => Err(crate::error::ApiError::too_large(limit)),
        _ => Ok(()),
    }
}

/// `MAX_BODY_BYTES`.
pub fn max_body_bytes(setting: Option<&str>) -> usize {
    bytes(setting, MAX_BODY_BYTES)
}

/// `MAX_RESPONSE_BYTES`.
pub fn max_response_bytes(setting: Option<&str>) -> usize {
    bytes(setting, MAX_RESPONSE_BYTES)
}

/// `MAX_UPLOAD_BYTES`.
pub fn max_upload_bytes(setting: Option<&str>) -> usize {
    bytes(setting, MAX_UPLOAD_BYTES)
}

/// How many registry shards usage is flushed through: none without a `RATING_URL`,
/// else `FLUSH_SHARDS` within 1 to 1024.
pub fn flush_shards(rating_url: Option<&str>, shards: Option<&str>) -> Option<u32> {
    rating_url?;
    let n = shards
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(FLUSH_SHARDS);
    Some(n.clamp(1, 1024))
}

/// The shard count, or 409 when flushing is off: no shard then knows the customers.
pub fn flushing_on(shards: Option<u32>) -> Result<u32, crate::error::ApiError> {
    shards.ok_or_else(|| {
        let msg = "Flushing is off (no RATING_URL): no shard knows the customers.";
        crate::error::ApiError::conflict("flush_off", msg)
    })
}

/// Whether the built-in sandbox answers instead of a provider: for every test key,
/// and for a live key on a path with no upstream configured (a local setup).
pub fn sandboxed(mode: crate::keys::Mode, upstream_configured: bool) -> bool {
    mode == crate::keys::Mode::Test || !upstream_configured
}

/// The provider a request path goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `UPSTREAM_URL`, with `UPSTREAM_API_KEY` as a bearer token.
    OpenAi,
    /// `ANTHROPIC_UPSTREAM_URL`, with `ANTHROPIC_API_KEY` as `x-api-key`.
    Anthropic,
}

impl Provider {
    /// The messages API and its sub-routes (count_tokens) are Anthropic's.
    pub fn for_path(path: &str) -> Provider {
        match path == "/v1/messages" || path.starts_with("/v1/messages/") {
            true => Provider::Anthropic,
            false => Provider::OpenAi,
        }
    }

    /// The settings naming its base URL and the operator's key for it.
    pub fn settings(self) -> (&'static str, &'static str) {
        match self {
            Provider::OpenAi => ("UPSTREAM_URL", "UPSTREAM_API_KEY"),
            Provider::Anthropic => ("ANTHROPIC_UPSTREAM_URL", "ANTHROPIC_API_KEY"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_and_take_a_whole_number() {
        assert_eq!(max_body_bytes(None), 8 << 20);
        assert_eq!(max_body_bytes(Some(" 1024 ")), 1024);
        assert_eq!(max_response_bytes(Some("lots")), 32 << 20);
        assert_eq!(max_upload_bytes(Some("-1")), 512 << 20);
    }

    #[test]
    fn shards_need_a_receiver_and_stay_within_bounds() {
        assert_eq!(flush_shards(None, Some("4")), None);
        assert_eq!(flush_shards(Some("internal"), None), Some(16));
        assert_eq!(flush_shards(Some("internal"), Some("0")), Some(1));
        assert_eq!(flush_shards(Some("internal"), Some("5000")), Some(1024));
    }

    #[test]
    fn anthropic_paths_go_to_anthropic_with_its_own_key() {
        assert_eq!(Provider::for_path("/v1/messages"), Provider::Anthropic);
        assert_eq!(
            Provider::for_path("/v1/messages/count_tokens"),
            Provider::Anthropic
        );
        assert_eq!(Provider::for_path("/v1/messagesx"), Provider::OpenAi);
        assert_eq!(Provider::for_path("/v1/chat/completions"), Provider::OpenAi);
        assert_eq!(Provider::Anthropic.settings().1, "ANTHROPIC_API_KEY");
    }

    #[test]
    fn a_body_declared_too_large_is_refused_before_it_is_read() {
        assert!(declared_within(None, 10).is_ok());
        assert!(declared_within(Some(10), 10).is_ok());
        assert_eq!(declared_within(Some(11), 10).unwrap_err().status, 413);
    }

    #[test]
    fn the_sandbox_answers_test_keys_and_unconfigured_paths() {
        use crate::keys::Mode;
        assert!(sandboxed(Mode::Test, true) && sandboxed(Mode::Test, false));
        assert!(sandboxed(Mode::Live, false));
        assert!(
            !sandboxed(Mode::Live, true),
            "a live key reaches the provider"
        );
        assert_eq!(flushing_on(Some(4)), Ok(4));
        assert_eq!(flushing_on(None).unwrap_err().status, 409);
    }
}
