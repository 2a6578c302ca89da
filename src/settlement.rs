//! What a settlement, a release or an expiry changes on a customer's counter, as
//! values the counter object stores. A repeated settlement changes nothing; an
//! idempotent request's response is kept for its retries, and when it cannot be (it
//! expired, or was too large) its retries are told it was metered, never run again.

use crate::admission::not_kept;
use crate::counter_state::CounterState;
use crate::protocol::Replay;
use crate::reservation::{Expired, Landing};
use crate::usage::Usage;

/// What one settlement did. One value per settlement, moved once: its size does not
/// matter.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Settled {
    /// The reservation was unknown: settled or released already.
    Unknown,
    /// Dropped without metering (the request failed before any cost).
    Released,
    Landed {
        landing: Landing,
        /// It had expired, and its billed bound is what the usage replaced.
        late: bool,
        /// What its idempotent retries are answered with, when it was idempotent.
        replay: Option<Replay>,
    },
}

/// Settles reservation `id` to `usage`, or releases it when there is none.
pub fn settle(
    state: &mut CounterState,
    id: u64,
    usage: Option<&Usage>,
    estimated: bool,
    replay: Option<Replay>,
    now_ms: i64,
) -> Settled {
    let Some(usage) = usage else {
        return match state.release(id, now_ms) {
            Some(_) => Settled::Released,
            None => Settled::Unknown,
        };
    };
    let idempotent = state.reservations.get(&id).is_some_and(|r| r.idempotent);
    let late = state.expired.contains_key(&id);
    match state.settle(id, usage, estimated, now_ms) {
        None => Settled::Unknown,
        Some(landing) => Settled::Landed {
            landing,
            late,
            replay: idempotent.then(|| replay.unwrap_or_else(not_kept)),
        },
    }
}

/// A running request's heartbeat: its reservation lives a TTL longer, or is gone (410)
/// when it was settled, or expired because the heartbeat came too late.
pub fn extend(
    state: &mut CounterState,
    id: u64,
    now_ms: i64,
) -> Result<crate::reservation::Reservation, crate::error::ApiError> {
    state.extend(id, now_ms).ok_or_else(|| {
        let msg = "The reservation is settled or expired.";
        crate::error::ApiError::gone("reservation_gone", msg)
    })
}

/// A reservation nobody settled in time, billed its bound as estimated.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub id: u64,
    pub landing: Landing,
    /// Kept so a late settlement can replace the bound: only while its period is the
    /// current one.
    pub keep: Option<Expired>,
    /// For an idempotent request: billed now, so a retry with its key must not run
    /// (and be billed) again.
    pub replay: Option<Replay>,
}

/// Expires the next reservation past its deadline at `now_ms`, if any. One at a time,
/// so the counter stores each expiry before the next: a failed write leaves at most
/// that one in memory only.
pub fn expire_next(state: &mut CounterState, now_ms: i64) -> Option<Expiry> {
    for id in state.due(now_ms) {
        let idempotent = state.reservations.get(&id).is_some_and(|r| r.idempotent);
        let Some((landing, expired)) = state.expire(id, now_ms) else {
            continue;
        };
        let current = expired.period == state.period;
        return Some(Expiry {
            id,
            landing,
            keep: current.then_some(expired),
            replay: idempotent.then(not_kept),
        });
    }
    None
}

/// Expires every reservation past its deadline at `now_ms`.
pub fn expire_due(state: &mut CounterState, now_ms: i64) -> Vec<Expiry> {
    std::iter::from_fn(|| expire_next(state, now_ms)).collect()
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;
