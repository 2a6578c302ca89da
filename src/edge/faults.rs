//! Faults a test can inject into this isolate (only with the test clock on, so only
//! under a local test run): the next N settlement tries, or lease report tries, are
//! dropped as if the counter call had failed, and every other delivery to the rating
//! endpoint fails as a struggling receiver's would.

use crate::error::ApiError;
use serde::Deserialize;
use std::cell::Cell;
use worker::Env;

thread_local! {
    static DROP_SETTLES: Cell<u32> = const { Cell::new(0) };
    static DROP_REPORTS: Cell<u32> = const { Cell::new(0) };
    static FAIL_EVERY_OTHER_DELIVERY: Cell<bool> = const { Cell::new(false) };
    static DELIVERIES: Cell<u64> = const { Cell::new(0) };
}

/// Whether this delivery is to fail (every other one, while that fault is on).
pub fn delivery_fails() -> bool {
    FAIL_EVERY_OTHER_DELIVERY.with(Cell::get)
        && DELIVERIES.with(|n| {
            n.set(n.get() + 1);
            n.get() % 2 == 1
        })
}

/// Whether this settlement try is to be dropped (consumes one dropped try).
pub fn settle_fails() -> bool {
    DROP_SETTLES.with(take_one)
}

/// Whether this lease report try is to be dropped (consumes one dropped try).
pub fn report_fails() -> bool {
    DROP_REPORTS.with(take_one)
}

fn take_one(left: &Cell<u32>) -> bool {
    let n = left.get();
    left.set(n.saturating_sub(1));
    n > 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    #[serde(default)]
    drop_settles: u32,
    #[serde(default)]
    drop_reports: u32,
    #[serde(default)]
    fail_every_other_delivery: bool,
}

/// `POST /admin/v1/test/faults`.
pub fn set(env: &Env, bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    if !super::clock::test_hooks_on(env) {
        return Err(ApiError::not_found("No admin route test/faults."));
    }
    let f: Faults = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    let (settles, reports) = (f.drop_settles.min(1_000), f.drop_reports.min(1_000));
    DROP_SETTLES.with(|d| d.set(settles));
    DROP_REPORTS.with(|d| d.set(reports));
    FAIL_EVERY_OTHER_DELIVERY.with(|d| d.set(f.fail_every_other_delivery));
    Ok(
        serde_json::json!({ "drop_settles": settles, "drop_reports": reports,
        "fail_every_other_delivery": f.fail_every_other_delivery }),
    )
}
