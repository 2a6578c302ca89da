//! The in-memory model of one customer's usage counter: the current period's tallies,
//! in-flight reservations and the current minute window. The Durable Object owns one,
//! loads it from SQLite on start and writes each change through; all the arithmetic is
//! here, so it is tested natively with a fake clock.

use crate::catalog::{cost_of, Plan};
use crate::error::ApiError;
use crate::lease::{Lease, LeaseLosses};
use crate::period::{period_at, Period};
use crate::pricing::Pricing;
use crate::prompt_size::CacheWrites;
use crate::quota::{self, Ask, Totals, MINUTE_MS};
use crate::refusal::Refusal;
use crate::request::AdmitAsk;
pub use crate::reservation::Reservation;
use crate::reservation::{Expired, Landing, MAX_LIFETIME_MS, RESERVATION_TTL_MS};
pub use crate::tally::{MeterKey, Tally};
use crate::usage::Usage;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Requests and tokens admitted in one fixed minute window, reservations included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub index: i64,
    pub requests: u64,
    pub tokens: u64,
}

/// One customer's counter for the current period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CounterState {
    pub period: Period,
    pub anchor_day: u32,
    pub tallies: BTreeMap<MeterKey, Tally>,
    pub reservations: BTreeMap<u64, Reservation>,
    /// Reservations of the current period that expired, by id: a late settlement
    /// replaces what they were billed.
    pub expired: BTreeMap<u64, Expired>,
    pub window: Window,
    pub next_id: u64,
    /// Settlements so far: the sequence flushes are cut along.
    pub seq: u64,
    /// Quota leases held by isolates, by id (ids shared with reservations).
    pub leases: BTreeMap<u64, Lease>,
    pub lease_losses: LeaseLosses,
}

/// The usage a request reserves: its input bound, and its output cap or the plan's
/// default.
/// Its input is split by the rate it may bill at: audio at the audio rate, and the
/// rest at a cache-write rate when the request asks for cache writes, so the
/// reservation's price is a bound too.
pub fn reserve_of(plan: &Plan, ask: &AdmitAsk) -> Usage {
    let cap = ask.output_cap.unwrap_or(plan.default_max_output_tokens);
    let cap = ask.max_output.map_or(cap, |max| cap.min(max));
    let output = cap.saturating_mul(ask.choices.max(1));
    let audio = ask.audio_reserve.min(ask.input_reserve);
    let text = ask.input_reserve - audio;
    let (cache_write, cache_write_1h) = match ask.cache_writes {
        CacheWrites::None => (0, 0),
        CacheWrites::Default => (text, 0),
        CacheWrites::OneHour => (0, text),
    };
    Usage {
        input: ask.input_reserve,
        output: output.saturating_add(ask.output_extra),
        audio,
        cache_write,
        cache_write_1h,
        ..Usage::default()
    }
}

/// Refuses a request that cannot be bounded under a plan whose limits need a bound.
pub fn check_bounded(plan: &Plan, ask: &AdmitAsk) -> Result<(), Refusal> {
    match &ask.unbounded {
        Some(part) if plan.needs_output_cap() => Err(Refusal::Unbounded { part: part.clone() }),
        _ => Ok(()),
    }
}

/// Adds the context a `previous_response_id` carries to the input bound: everything
/// the provider read and wrote for that response (its own input already holds the
/// context before it). Under a plan with a hard token or spend limit, a response whose
/// tokens are not known yet (still running, or its usage was never read) has no bound,
/// so the request is refused rather than admitted unbounded.
pub fn carry_context(
    ask: &mut AdmitAsk,
    plan: &Plan,
    carried: Option<(u64, u64)>,
) -> Result<(), ApiError> {
    match carried {
        Some((input, output)) if input > 0 || output > 0 => {
            let carried = input.saturating_add(output);
            ask.input_reserve = ask.input_reserve.saturating_add(carried);
            ask.input_estimate = ask.input_estimate.saturating_add(carried);
            Ok(())
        }
        _ if plan.needs_output_cap() => {
            let msg = "The usage of the response named by `previous_response_id` is not known yet, so this request cannot be bounded under your plan's limits; wait for that response to finish, or send its context as `input`.";
            Err(ApiError::bad_request("unbounded_context", msg).with_param("previous_response_id"))
        }
        _ => Ok(()),
    }
}

impl CounterState {
    pub fn new(anchor_day: u32, now_ms: i64) -> Self {
        CounterState {
            period: period_at(now_ms, anchor_day),
            anchor_day,
            next_id: 1,
            ..Default::default()
        }
    }

    /// Starts a new period when `now_ms` has passed the current one; returns whether it did.
    /// Old tallies stay in storage under their period; in memory the new period starts at 0.
    /// Time only moves forward here: a call stamped earlier (a settlement sent before a
    /// period was closed early, another isolate's clock) never brings an old period or
    /// minute back.
    pub fn roll(&mut self, now_ms: i64) -> bool {
        let minute = now_ms.div_euclid(MINUTE_MS);
        if minute > self.window.index {
            self.window = Window {
                index: minute,
                requests: 0,
                tokens: 0,
            };
        }
        if now_ms < self.period.end_ms {
            return false;
        }
        self.period = period_at(now_ms, self.anchor_day);
        self.tallies.clear();
        self.expired.clear();
        true
    }

    /// Ends the current period at `now_ms` (a cancellation or plan change) and starts
    /// one at zero that runs to the next anchor date; returns the period that ended.
    pub fn close_period(&mut self, now_ms: i64) -> Period {
        self.roll(now_ms);
        let old = self.period;
        self.period = Period {
            start_ms: now_ms,
            end_ms: period_at(now_ms + 1, self.anchor_day).end_ms,
        };
        self.tallies.clear();
        old
    }

    /// The current minute window only (all the rate-limit headers need): unlike
    /// [`CounterState::totals`] it prices nothing.
    pub fn minute_totals(&self) -> Totals {
        let (_, leased) = self.lease_holds();
        Totals {
            minute_requests: self.window.requests.saturating_add(leased.requests),
            minute_tokens: self.window.tokens.saturating_add(leased.tokens),
            ..Totals::default()
        }
    }

    /// Used plus reserved, as quota decisions see it.
    pub fn totals(&self, pricing: &Pricing) -> Totals {
        let mut t = Totals {
            in_flight: self.reservations.len() as u64,
            ..self.minute_totals()
        };
        for tally in self.tallies.values() {
            t.period_requests = t.period_requests.saturating_add(tally.requests);
            t.period_tokens = t.period_tokens.saturating_add(tally.usage().tokens());
        }
        t.period_spend = self.committed_spend(pricing, None);
        for r in self.reservations.values() {
            t.period_requests = t.period_requests.saturating_add(1);
            t.period_tokens = t.period_tokens.saturating_add(r.tokens);
        }
        let (leased, _) = self.lease_holds();
        let leased_in_flight: u64 = self.leases.values().map(Lease::in_flight).sum();
        t.in_flight = t.in_flight.saturating_add(leased_in_flight);
        t.period_requests = t.period_requests.saturating_add(leased.requests);
        t.period_tokens = t.period_tokens.saturating_add(leased.tokens);
        t.period_spend += leased.cost;
        t
    }

    /// The period's spend with every reservation (and `extra`) at its bound, by the
    /// engine that prices the period: under a price-book plan the rating engine prices
    /// settled and reserved usage together (included units and tiers apply to the
    /// whole), under list prices each reservation adds its list price.
    fn committed_spend(&self, pricing: &Pricing, extra: Option<(&MeterKey, &Usage)>) -> Decimal {
        if !pricing.needs_totals() {
            let reserved: Decimal = self.reservations.values().map(|r| r.cost).sum();
            let catalog = pricing.catalog();
            let extra = extra.map_or(Decimal::ZERO, |(k, u)| cost_of(catalog, &k.1, u, 1));
            return pricing.spend(self.period, &self.tallies) + reserved + extra;
        }
        let mut all = self.tallies.clone();
        let held = self.reservations.values().map(|r| (r.key(), r.bound()));
        for (key, usage) in held.chain(extra.map(|(k, u)| (k.clone(), *u))) {
            all.entry(key).or_default().add(&usage, false);
        }
        pricing.spend(self.period, &all)
    }

    /// Admits a request under `plan` and reserves its estimate ([`reserve_of`]), or
    /// says why not.
    pub fn admit(
        &mut self,
        pricing: &Pricing,
        plan: &Plan,
        ask: &AdmitAsk,
        now_ms: i64,
    ) -> Result<Reservation, Refusal> {
        self.roll(now_ms);
        check_bounded(plan, ask)?;
        let reserve = reserve_of(plan, ask);
        let key = (ask.meter.clone(), ask.model.clone());
        let totals = self.totals(pricing);
        let cost = match pricing.needs_totals() {
            false => cost_of(pricing.catalog(), &ask.model, &reserve, 1),
            true => {
                let with = self.committed_spend(pricing, Some((&key, &reserve)));
                (with - totals.period_spend).max(Decimal::ZERO)
            }
        };
        let want = Ask {
            tokens: reserve.tokens(),
            cost,
        };
        quota::admit(plan, &totals, &want, now_ms, self.period.end_ms)?;
        let r = Reservation {
            id: self.next_id,
            created_ms: now_ms,
            minute: self.window.index,
            meter: ask.meter.clone(),
            model: ask.model.clone(),
            tokens: want.tokens,
            input_estimate: ask.input_estimate,
            cost: want.cost,
            idempotent: false,
            reserved: Some(reserve),
            deadline_ms: now_ms.saturating_add(RESERVATION_TTL_MS),
            period: Some(self.period),
        };
        self.next_id += 1;
        self.window.requests = self.window.requests.saturating_add(1);
        self.window.tokens = self.window.tokens.saturating_add(want.tokens);
        self.reservations.insert(r.id, r.clone());
        Ok(r)
    }

    /// Replaces a reservation by the actual usage, in the period it was admitted in;
    /// returns where it landed, or `None` when the reservation is unknown (already
    /// settled: a duplicate is a no-op). A reservation that expired meanwhile has its
    /// estimate replaced ([`CounterState::settle_late`]).
    pub fn settle(
        &mut self,
        id: u64,
        usage: &Usage,
        estimated: bool,
        now_ms: i64,
    ) -> Option<Landing> {
        self.roll(now_ms);
        let Some(r) = self.reservations.remove(&id) else {
            return self.settle_late(id, usage, estimated);
        };
        if r.minute == self.window.index {
            let held = self.window.tokens.saturating_sub(r.tokens);
            self.window.tokens = held.saturating_add(usage.tokens());
        }
        self.seq = self.seq.saturating_add(1);
        let key = (r.meter, r.model);
        match r.period.filter(|p| *p != self.period) {
            Some(period) => Some(Landing::Past {
                period,
                key,
                delta: Tally::one(usage, estimated),
            }),
            None => {
                let tally = self.tallies.entry(key.clone()).or_default();
                tally.add(usage, estimated);
                Some(Landing::Current(key, *tally))
            }
        }
    }

    /// Drops a reservation without metering (the request failed before any cost).
    pub fn release(&mut self, id: u64, now_ms: i64) -> Option<Reservation> {
        let r = self.reservations.remove(&id)?;
        self.roll(now_ms);
        if r.minute == self.window.index {
            self.window.requests = self.window.requests.saturating_sub(1);
            self.window.tokens = self.window.tokens.saturating_sub(r.tokens);
        }
        Some(r)
    }
}

/// Reservations' lives: heartbeats, expiry, settlements that land late.
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
        let leases = self.leases.values().map(Lease::next_deadline);
        self.reservations
            .values()
            .map(Reservation::deadline)
            .chain(leases)
            .min()
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
        let leased = self.leases.values().map(|l| Some(l.period));
        let open = self.reservations.values().map(|r| r.period);
        let open = open.chain(leased).flatten();
        open.map(|p| p.start_ms)
            .chain([self.period.start_ms])
            .min()
            .unwrap_or(self.period.start_ms)
    }
}

#[cfg(test)]
#[path = "counter_state_tests.rs"]
mod tests;
