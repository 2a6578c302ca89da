//! Faults a test can inject into this isolate (only with the test clock on, so only
//! under a local test run): the next N settlement tries are dropped as if the counter
//! call had failed.

use crate::error::ApiError;
use serde::Deserialize;
use std::cell::Cell;
use worker::Env;

thread_local! {
    static DROP_SETTLES: Cell<u32> = const { Cell::new(0) };
}

/// Whether this settlement try is to be dropped (consumes one dropped try).
pub fn settle_fails() -> bool {
    DROP_SETTLES.with(|d| {
        let left = d.get();
        d.set(left.saturating_sub(1));
        left > 0
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    drop_settles: u32,
}

/// `POST /admin/v1/test/faults`.
pub fn set(env: &Env, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if !super::clock::test_hooks_on(env) {
        return Err(ApiError::not_found("No admin route test/faults."));
    }
    let f: Faults = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    DROP_SETTLES.with(|d| d.set(f.drop_settles.min(1_000)));
    Ok(serde_json::json!({ "drop_settles": f.drop_settles.min(1_000) }))
}
