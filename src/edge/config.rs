//! Settings read from the Worker's environment: `[vars]` and secrets. The catalog is
//! parsed once per isolate and reused until its text changes.

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::limits::{self, Provider};
use crate::rating::PriceBook;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::Env;

/// The demo catalog, used when no `CATALOG` variable is set.
const DEFAULT_CATALOG: &str = include_str!("../../catalog.json");

/// The demo price book of the rating endpoint, used when no `PRICE_BOOK` is set.
const DEFAULT_PRICE_BOOK: &str = include_str!("../../price_book.json");

thread_local! {
    static CATALOG: RefCell<Option<Rc<Catalog>>> = const { RefCell::new(None) };
    static PRICE_BOOK: RefCell<Option<Rc<PriceBook>>> = const { RefCell::new(None) };
    static KEY_SECRET: RefCell<Option<Rc<[u8]>>> = const { RefCell::new(None) };
    static SETTINGS: RefCell<BTreeMap<String, Option<String>>> = const { RefCell::new(BTreeMap::new()) };
}

/// The rating endpoint's price book; a broken one is an internal error with its path.
/// Parsed once per isolate, like the catalog.
pub fn price_book(env: &Env) -> Result<Rc<PriceBook>, ApiError> {
    if let Some(book) = PRICE_BOOK.with(|c| c.borrow().clone()) {
        return Ok(book);
    }
    let text = setting(env, "PRICE_BOOK").unwrap_or_else(|| DEFAULT_PRICE_BOOK.to_string());
    let book = PriceBook::parse(&text)
        .map_err(|e| ApiError::internal(format!("invalid PRICE_BOOK {}: {}", e.path, e.message)))?;
    let book = Rc::new(book);
    PRICE_BOOK.with(|c| *c.borrow_mut() = Some(book.clone()));
    Ok(book)
}

/// A plain setting or secret, `None` when unset or empty. Read from the environment
/// once per isolate: several are on every request's path, and each read crosses into
/// JavaScript.
pub fn setting(env: &Env, name: &str) -> Option<String> {
    if let Some(known) = SETTINGS.with(|c| c.borrow().get(name).cloned()) {
        return known;
    }
    let value = env.var(name).ok().map(|v| v.to_string());
    let value = value.filter(|v| !v.trim().is_empty());
    SETTINGS.with(|c| c.borrow_mut().insert(name.to_string(), value.clone()));
    value
}

/// The current catalog; a broken one is an internal error naming its JSON path. Read
/// and parsed once per isolate: settings cannot change under a running isolate.
pub fn catalog(env: &Env) -> Result<Rc<Catalog>, ApiError> {
    if let Some(cat) = CATALOG.with(|c| c.borrow().clone()) {
        return Ok(cat);
    }
    let text = setting(env, "CATALOG").unwrap_or_else(|| DEFAULT_CATALOG.to_string());
    let parsed =
        Rc::new(Catalog::parse(&text).map_err(|e| ApiError::internal(format!("invalid {e}")))?);
    CATALOG.with(|c| *c.borrow_mut() = Some(parsed.clone()));
    Ok(parsed)
}

/// The server secret keys are signed under (`KEY_SECRET`). Without it no key can be
/// issued or accepted, so a deployment that forgot it fails closed.
/// Read once per isolate, like the catalog: it is on every request's path.
pub fn key_secret(env: &Env) -> Result<Rc<[u8]>, ApiError> {
    if let Some(secret) = KEY_SECRET.with(|c| c.borrow().clone()) {
        return Ok(secret);
    }
    let secret: Rc<[u8]> = setting(env, "KEY_SECRET")
        .ok_or_else(|| ApiError::internal("KEY_SECRET is not set: no API key can be checked."))?
        .into_bytes()
        .into();
    KEY_SECRET.with(|c| *c.borrow_mut() = Some(secret.clone()));
    Ok(secret)
}

/// The largest upstream answer edgemeter buffers (`MAX_RESPONSE_BYTES`, default 32 MiB).
/// Streams are not buffered and have no such cap.
pub fn max_response_bytes(env: &Env) -> usize {
    limits::max_response_bytes(setting(env, "MAX_RESPONSE_BYTES").as_deref())
}

/// How much of a stream is still read after its client left (`ABORT_DRAIN_MS`,
/// `ABORT_DRAIN_BYTES`).
pub fn drain_budget(env: &Env) -> crate::stream_meter::DrainBudget {
    crate::stream_meter::DrainBudget::from_settings(
        setting(env, "ABORT_DRAIN_MS").as_deref(),
        setting(env, "ABORT_DRAIN_BYTES").as_deref(),
    )
}

/// The largest file upload (`MAX_UPLOAD_BYTES`, default 512 MiB, the provider's own
/// limit). Uploads stream through, so this bounds what a customer can store, not memory.
pub fn max_upload_bytes(env: &Env) -> usize {
    limits::max_upload_bytes(setting(env, "MAX_UPLOAD_BYTES").as_deref())
}

/// The largest request body (`MAX_BODY_BYTES`, default 8 MiB).
pub fn max_body_bytes(env: &Env) -> usize {
    limits::max_body_bytes(setting(env, "MAX_BODY_BYTES").as_deref())
}

/// Where live requests go, and the company's key for it.
pub struct Upstream {
    pub base_url: String,
    pub api_key: Option<String>,
    /// Anthropic authenticates with `x-api-key` instead of a bearer token.
    pub anthropic: bool,
}

/// The upstream for a path, or `None` when none is configured (the sandbox answers).
pub fn upstream(env: &Env, path: &str) -> Option<Upstream> {
    let provider = Provider::for_path(path);
    let (url, key) = provider.settings();
    Some(Upstream {
        base_url: setting(env, url)?.trim_end_matches('/').to_string(),
        api_key: setting(env, key),
        anthropic: provider == Provider::Anthropic,
    })
}

/// Number of flush registry shards, or `None` when no `RATING_URL` is set (no flushing).
pub fn flush_shards(env: &Env) -> Option<u32> {
    let (url, shards) = (setting(env, "RATING_URL"), setting(env, "FLUSH_SHARDS"));
    limits::flush_shards(url.as_deref(), shards.as_deref())
}

/// Where test usage goes (`RATING_URL`, `EXPORT_TEST_USAGE`).
pub fn test_usage_route(env: &Env) -> crate::flush::TestUsageRoute {
    let (url, export) = (
        setting(env, "RATING_URL"),
        setting(env, "EXPORT_TEST_USAGE"),
    );
    crate::flush::TestUsageRoute::from_settings(url.as_deref(), export.as_deref())
}

/// The least time between two pushes of one counter (`FLUSH_PUSH_MS`).
pub fn push_interval_ms(env: &Env) -> i64 {
    crate::flush::wake::push_interval_ms(setting(env, "FLUSH_PUSH_MS").as_deref())
}
