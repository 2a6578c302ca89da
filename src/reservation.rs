//! A reservation's life after admission: a running request extends it (a stream's
//! heartbeat), so it is never expired from under itself; one nobody extends or settles
//! expires at its deadline and is billed its reserved bound, flagged estimated, never
//! zero; a real settlement that arrives after that replaces the estimate while its
//! period is still the counter's current one. Usage always lands in the period the
//! request was admitted in.

use crate::counter_state::{CounterState, MeterKey, Tally};
use crate::period::Period;
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

/// Capacity held for a request between admission and settlement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Into an earlier period, still open for it: add `usage` to that period's stored
    /// tally (the counter holds only the current one in memory).
    Past {
        period: Period,
        key: MeterKey,
        usage: Usage,
        estimated: bool,
    },
}

impl CounterState {
    /// A running request is alive at `now_ms`: its deadline moves to a TTL from now.
    /// Returns the reservation to store, or `None` when it is gone (settled or expired).
    pub fn extend(&mut self, id: u64, now_ms: i64) -> Option<Reservation> {
        let r = self.reservations.get_mut(&id)?;
        let latest = r.created_ms.saturating_add(MAX_LIFETIME_MS);
        let wanted = now_ms.saturating_add(RESERVATION_TTL_MS).min(latest);
        r.deadline_ms = r.deadline().max(wanted);
        Some(r.clone())
    }

    /// Reservations whose deadline has passed at `now_ms`.
    pub fn due(&self, now_ms: i64) -> Vec<u64> {
        let due = |r: &&Reservation| r.deadline() <= now_ms;
        self.reservations
            .values()
            .filter(due)
            .map(|r| r.id)
            .collect()
    }

    /// The soonest reservation deadline, for the counter's alarm.
    pub fn next_deadline(&self) -> Option<i64> {
        self.reservations.values().map(Reservation::deadline).min()
    }

    /// Expires reservation `id`, billing its bound as estimated. Returns where the usage
    /// landed and the record that lets a late settlement replace it.
    pub fn expire(&mut self, id: u64, now_ms: i64) -> Option<(Landing, Expired)> {
        let r = self.reservations.get(&id)?;
        let (bound, meter, model) = (r.bound(), r.meter.clone(), r.model.clone());
        let period = r.period.unwrap_or(self.period);
        let landing = self.settle(id, &bound, true, now_ms)?;
        let expired = Expired {
            id,
            meter,
            model,
            period,
            billed: bound,
        };
        if period == self.period {
            self.expired.insert(id, expired.clone());
        }
        Some((landing, expired))
    }

    /// The usage of a reservation that already expired, arriving late: while its period
    /// is the current one, it replaces the billed bound in the tally.
    pub(crate) fn settle_late(
        &mut self,
        id: u64,
        usage: &Usage,
        estimated: bool,
    ) -> Option<Landing> {
        let e = self.expired.remove(&id)?;
        if e.period != self.period {
            return None; // that period may be flushed as final: the estimate stands
        }
        let key = (e.meter, e.model);
        let tally = self.tallies.entry(key.clone()).or_default();
        tally.replace(&e.billed, usage, estimated);
        self.seq = self.seq.saturating_add(1);
        Some(Landing::Current(key, *tally))
    }

    /// The start of the earliest period that still has reservations in flight, or the
    /// current period's: periods that end before it are complete and may be sent final.
    pub fn complete_before(&self) -> i64 {
        let open = self.reservations.values().filter_map(|r| r.period);
        open.map(|p| p.start_ms)
            .chain([self.period.start_ms])
            .min()
            .unwrap_or(self.period.start_ms)
    }
}

impl Tally {
    /// Swaps one estimated request's `billed` usage for its real `usage`.
    pub fn replace(&mut self, billed: &Usage, usage: &Usage, estimated: bool) {
        let mut less = Tally::default();
        less.add(billed, true);
        less.requests = 0;
        *self = self.minus(&less);
        self.requests = self.requests.saturating_sub(1);
        self.add(usage, estimated);
    }
}

#[cfg(test)]
#[path = "reservation_tests.rs"]
mod tests;
