//! The Worker's clock: `Date.now()`, moved forward by the test clock when the
//! `TEST_CLOCK` setting allows it (see `crate::test_clock`). Durable Objects of this
//! Worker share the isolate's offset.

use super::config;
use crate::error::ApiError;
use crate::test_clock;
use std::cell::Cell;
use worker::{Env, Request};

thread_local! {
    static OFFSET_MS: Cell<i64> = const { Cell::new(0) };
    /// The `TEST_CLOCK` setting, read once per isolate (settings cannot change under it).
    static SETTING: std::cell::OnceCell<Option<String>> = const { std::cell::OnceCell::new() };
}

fn setting(env: &Env) -> Option<String> {
    SETTING.with(|s| {
        s.get_or_init(|| config::setting(env, test_clock::SETTING))
            .clone()
    })
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    wall_ms().saturating_add(OFFSET_MS.with(Cell::get))
}

/// The wall-clock time at which the clock will read `at_ms`: when an alarm must fire.
pub fn wall_at(at_ms: i64) -> i64 {
    at_ms.saturating_sub(OFFSET_MS.with(Cell::get))
}

/// Wall-clock time, never moved by the test clock: for signatures, which the other
/// side checks against its own clock.
pub fn wall_ms() -> i64 {
    worker::js_sys::Date::now() as i64
}

/// Refuses every request when the test clock is on outside a local test run.
pub fn guard(req: &Request, env: &Env) -> Result<(), ApiError> {
    if setting(env).is_none() {
        return Ok(()); // the usual case: no test clock, nothing to look at
    }
    guard_url(&req.inner().url(), env)
}

/// [`guard`], from the request's URL.
pub fn guard_url(url: &str, env: &Env) -> Result<(), ApiError> {
    let Some(setting) = setting(env) else {
        return Ok(());
    };
    test_clock::allowed(Some(&setting), test_clock::host_of(url)).map(|_| ())
}

/// Whether the `TEST_CLOCK` setting turns the test hooks on (clock, faults).
pub fn test_hooks_on(env: &Env) -> bool {
    test_clock::enabled(setting(env).as_deref())
}

/// `POST /admin/v1/test/clock`: moves the clock forward (only with the test clock on).
pub fn advance(env: &Env, bytes: &[u8]) -> Result<i64, ApiError> {
    if !test_hooks_on(env) {
        return Err(ApiError::not_found("No admin route test/clock."));
    }
    let by = test_clock::parse_advance(bytes)?;
    OFFSET_MS.with(|o| o.set(o.get().saturating_add(by)));
    Ok(now_ms())
}
