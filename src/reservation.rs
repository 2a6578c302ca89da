//! A reservation's life after admission: a running request extends it (a stream's
//! heartbeat), so it is never expired from under itself; one nobody extends or settles
//! expires at its deadline and is billed its reserved bound, flagged estimated, never
//! zero; a real settlement that arrives after that replaces the estimate while its
//! period is still the counter's current one. Usage always lands in the period the
//! request was admitted in.

use crate::period::Period;
use crate::tally::{MeterKey, Tally};
use crate::usage::Usage;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A reservation neither extended nor settled for this long belongs to a request whose
/// worker died; it expires.
pub const RESERVATION_TTL_MS: i64 = 15 * 60_000;

/// The longest a reservation lives, heartbeats or not: a stream that runs longer
/// is billed its bound when this passes (its real settlement may still replace that),
/// so no request holds its period's final records back for more than this.
pub const MAX_LIFETIME_MS: i64 = 2 * 3_600_000;

/// How often (by the clock) a running stream extends its reservation: well inside the
/// TTL, so a few lost heartbeats in a row still leave it alive.
pub const HEARTBEAT_MS: i64 = 60_000;

/// Whether a running request's heartbeat is due: one every [`HEARTBEAT_MS`].
pub fn heartbeat_due(last_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(last_ms) >= HEARTBEAT_MS
}

/// Waits before each settlement try (milliseconds), within `wait_until`: three tries,
/// and a settlement is idempotent on the counter. If every try fails, the reservation
/// stays and is billed its bound when it expires: never zero.
pub const SETTLE_BACKOFF_MS: [u64; 3] = [0, 250, 1_000];

/// The longest one settlement try may take: three fit, with their waits, in what
/// `wait_until` has left after a stream's drain.
pub const SETTLE_TRY_MS: u64 = 2_000;

/// Capacity held for a request between admission and settlement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reservation {
    pub id: u64,
    pub created_ms: i64,
    /// Index of the minute window it was admitted in.
    pub minute: i64,
    pub meter: String,
    pub model: String,
    pub tokens: u64,
    pub input_estimate: u64,
    pub cost: Decimal,
    /// The request carried an `Idempotency-Key`, so its response is kept for replay.
    #[serde(default)]
    pub idempotent: bool,
    /// The usage reserved (input bound, output cap times choices): what it is billed
    /// if it expires. Absent in rows written before it was kept.
    #[serde(default)]
    pub reserved: Option<Usage>,
    /// When it expires unless extended or settled (0 in older rows: TTL after creation).
    #[serde(default)]
    pub deadline_ms: i64,
    /// The period it was admitted in, where its usage lands.
    #[serde(default)]
    pub period: Option<Period>,
}

impl Reservation {
    pub fn deadline(&self) -> i64 {
        if self.deadline_ms > 0 {
            self.deadline_ms
        } else {
            self.created_ms.saturating_add(RESERVATION_TTL_MS)
        }
    }

    /// The tally it lands in.
    pub fn key(&self) -> MeterKey {
        (self.meter.clone(), self.model.clone())
    }

    /// What an expired reservation is billed: everything it reserved. Rows from before
    /// `reserved` was kept bound their tokens as input past the estimate as output.
    pub fn bound(&self) -> Usage {
        self.reserved.unwrap_or(Usage {
            input: self.input_estimate,
            output: self.tokens.saturating_sub(self.input_estimate),
            ..Usage::default()
        })
    }
}

/// A reservation that expired and was billed its bound, remembered so a late real
/// settlement can replace the estimate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expired {
    pub id: u64,
    pub meter: String,
    pub model: String,
    pub period: Period,
    pub billed: Usage,
}

/// Where a settlement's usage went.
#[derive(Debug, Clone, PartialEq)]
pub enum Landing {
    /// Into the current period: the tally to store.
    Current(MeterKey, Tally),
    /// Into an earlier period, still open for it: add `delta` (one request's usage, or
    /// a lease report's batch) to that period's stored tally (the counter holds only
    /// the current one in memory).
    Past {
        period: Period,
        key: MeterKey,
        delta: Tally,
    },
}

impl Landing {
    /// Where it lands: the period (`current` for the current one) and the meter key.
    pub fn place(&self, current: Period) -> (Period, &MeterKey) {
        match self {
            Landing::Current(key, _) => (current, key),
            Landing::Past { period, key, .. } => (*period, key),
        }
    }

    /// The tally to store there: the current period's as the counter computed it, or
    /// an earlier period's `stored` tally with the usage added.
    pub fn tally(&self, stored: Option<Tally>) -> Tally {
        match self {
            Landing::Current(_, tally) => *tally,
            Landing::Past { delta, .. } => stored.unwrap_or_default().plus(delta),
        }
    }

    /// Whether storing it needs the stored tally first.
    pub fn adds_to_stored(&self) -> bool {
        matches!(self, Landing::Past { .. })
    }
}

#[cfg(test)]
#[path = "reservation_tests.rs"]
mod tests;
