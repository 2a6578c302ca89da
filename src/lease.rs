//! Quota leases, the counter's side: a slice of what is left of each limit, granted to
//! one isolate (for one key) for a short window, so the isolate admits requests with no
//! Durable Object call and reports what they used in batches.
//!
//! - A lease's hold counts in the counter's totals exactly as reservations do, so the
//!   holds and the settled usage together never pass a limit.
//! - A lease is at most `1/SHARE` of what is left, and none is granted when that would
//!   cover fewer than [`MIN_LEASE_REQUESTS`] of the asking request: near a limit every
//!   request is reserved on its own again, which is exact.
//! - The counter's clock judges a lease: its window ends [`LEASE_MS`] after the grant,
//!   and never crosses a minute or period boundary. The holder stops at its own,
//!   earlier, reading of that end.
//! - Reports are cumulative and numbered, so a duplicated, lost or reordered report
//!   neither counts twice nor loses what a later one carries.
//! - The loss window: usage the holder has not reported when it dies is lost. The
//!   holder reports within [`REPORT_MS`] of each admission and each finish (from the
//!   request's own `wait_until`), so that is the window, and the counter counts every
//!   lease it has to close without its holder's last word ([`LeaseLosses`]).

use crate::counter_state::CounterState;
use crate::period::Period;
use crate::reservation::{MAX_LIFETIME_MS, RESERVATION_TTL_MS};
use crate::tally::{MeterKey, Tally};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How long a lease admits, by the counter's clock (less at a minute's end).
pub const LEASE_MS: i64 = 2_000;
/// After a lease's window, how long the counter waits for its holder's reports before
/// it frees what they do not account for: far above [`REPORT_MS`] plus the settle
/// retries, so only a dead holder's capacity is freed this way.
pub const RELEASE_GRACE_MS: i64 = 30_000;
/// The holder reports within this long of any change (a batch's age). Each report is
/// a counter transaction, which the storage makes durable (an fsync under workerd,
/// about as costly as a few hundred proxied requests); a quarter second keeps that
/// below a tenth of a millisecond per request at a thousand requests a second, and
/// the loss window far inside the 30 s a request's `wait_until` may run.
pub const REPORT_MS: i64 = 250;
/// Or as soon as this many changes wait (an admission and a finish are two).
pub const REPORT_CHANGES: u64 = 1024;
/// Waits before each try of a lease report (milliseconds), within `wait_until`. A
/// failed try is carried by the next report anyway, but a customer's last report has
/// no next one: without these tries it would wait in the isolate until its customer
/// came back or the isolate died. About 5 s in all, far inside what `wait_until` may run.
pub const REPORT_BACKOFF_MS: [u64; 4] = [0, 250, 1_000, 4_000];
/// A lease takes at most this fraction (1/SHARE) of what is left of each limit.
pub const SHARE: u64 = 8;
/// The most requests one lease admits.
pub const MAX_LEASE_REQUESTS: u64 = 4_096;
/// Fewer requests than this are not worth a lease: they are reserved one by one.
pub const MIN_LEASE_REQUESTS: u64 = 2;

/// Amounts of each limit: requests, tokens (their bounds) and spend (its bound).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slice {
    pub requests: u64,
    pub tokens: u64,
    pub cost: Decimal,
}

impl Slice {
    pub fn plus(&self, o: &Slice) -> Slice {
        Slice {
            requests: self.requests.saturating_add(o.requests),
            tokens: self.tokens.saturating_add(o.tokens),
            cost: self.cost + o.cost,
        }
    }

    pub fn minus(&self, o: &Slice) -> Slice {
        Slice {
            requests: self.requests.saturating_sub(o.requests),
            tokens: self.tokens.saturating_sub(o.tokens),
            cost: (self.cost - o.cost).max(Decimal::ZERO),
        }
    }
}

/// What a lease lets its holder admit. A limit the plan does not have is not held
/// (`None`): the holder only counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub requests: u64,
    pub tokens: Option<u64>,
    pub cost: Option<Decimal>,
    /// Requests it may have running at once, under a concurrency limit.
    #[serde(default)]
    pub concurrent: Option<u64>,
}

impl Grant {
    /// Whether one more request needing `want` fits what `report` says is used.
    pub fn fits(&self, report: &Report, want: &Slice) -> bool {
        let with = report.admitted.plus(want);
        let running = report.open().requests.saturating_add(1);
        with.requests <= self.requests
            && self.tokens.is_none_or(|t| with.tokens <= t)
            && self.cost.is_none_or(|c| with.cost <= c)
            && self.concurrent.is_none_or(|c| running <= c)
    }
}

/// A holder's cumulative account of one lease: everything admitted under it, what of
/// that finished, and what the finished requests used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report {
    pub lease: u64,
    /// Grows with every change: the counter applies only a report newer than its last.
    pub seq: u64,
    pub admitted: Slice,
    pub finished: Slice,
    /// The finished requests' usage by meter and model (released ones add nothing).
    pub usage: Vec<(MeterKey, Tally)>,
    /// The holder admits nothing more under it.
    pub done: bool,
}

impl Report {
    /// What is admitted and not finished: the bounds of the requests still running.
    pub fn open(&self) -> Slice {
        self.admitted.minus(&self.finished)
    }

    fn tally(&self, key: &MeterKey) -> Tally {
        let found = self.usage.iter().find(|(k, _)| k == key);
        found.map(|(_, t)| *t).unwrap_or_default()
    }
}

/// A lease as the counter keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    pub id: u64,
    pub period: Period,
    /// The minute window it was granted in (its window never leaves it).
    pub minute: i64,
    pub grant: Grant,
    pub granted_ms: i64,
    /// The end of its window, by the counter's clock.
    pub until_ms: i64,
    /// Its running requests are held until then; each report that has some moves it.
    pub deadline_ms: i64,
    /// The last report applied.
    pub report: Report,
    /// Its window is over: it holds only the requests its reports say are running.
    pub closed: bool,
}

impl Lease {
    /// What it holds of each limit: the unused grant while it may still admit, and the
    /// bounds of its running requests.
    pub fn hold(&self) -> Slice {
        let (g, a) = (&self.grant, &self.report.admitted);
        let top = match self.closed {
            true => a.clone(),
            false => Slice {
                requests: g.requests.max(a.requests),
                tokens: g.tokens.map_or(a.tokens, |t| t.max(a.tokens)),
                cost: g.cost.map_or(a.cost, |c| c.max(a.cost)),
            },
        };
        top.minus(&self.report.finished)
    }

    /// The requests it counts as running: its unused concurrency while it may still
    /// admit, or the running requests its reports say.
    pub fn in_flight(&self) -> u64 {
        let running = self.report.open().requests;
        match (self.closed, self.grant.concurrent) {
            (false, Some(slots)) => slots.max(running),
            _ => running,
        }
    }

    /// When the counter next has to look at it.
    pub fn next_deadline(&self) -> i64 {
        match self.closed {
            true => self.deadline_ms,
            false => self.until_ms.saturating_add(RELEASE_GRACE_MS),
        }
    }
}

/// Leases the counter closed without their holder's last word: usage their holders
/// had not reported may be lost (the documented window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseLosses {
    /// Closed at the end of the grace with no `done` report.
    pub unreturned: u64,
    /// Dropped at their deadline with requests still running by their last report.
    pub expired_running: u64,
}

/// What the store does after a lease decision.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseChange {
    Store(Box<Lease>),
    Drop(u64),
}

/// A report applied: the usage to land, and the lease to store or drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub landings: Vec<crate::reservation::Landing>,
    pub change: LeaseChange,
}

impl CounterState {
    /// Applies a holder's report. `None` for a lease the counter no longer holds or a
    /// report no newer than the last: a duplicate or a late one, which changes nothing.
    pub fn apply_report(&mut self, report: &Report, now_ms: i64) -> Option<Applied> {
        self.roll(now_ms);
        let lease = self.leases.get(&report.lease)?;
        if report.seq <= lease.report.seq {
            return None;
        }
        let lease = self.leases.remove(&report.lease)?;
        let mut landings = vec![];
        let mut minute = Tally::default();
        for (key, tally) in &report.usage {
            let delta = tally.minus(&lease.report.tally(key));
            if delta.is_zero() {
                continue;
            }
            minute = minute.plus(&delta);
            landings.push(self.land(lease.period, key, &delta));
        }
        if !landings.is_empty() {
            self.seq = self.seq.saturating_add(1);
        }
        if lease.minute == self.window.index {
            let w = &mut self.window;
            w.requests = w.requests.saturating_add(minute.requests);
            w.tokens = w.tokens.saturating_add(minute.usage().tokens());
        }
        let mut lease = lease;
        lease.report = report.clone();
        lease.closed |= report.done;
        let running = report.open().requests > 0;
        if running {
            let latest = lease.granted_ms.saturating_add(MAX_LIFETIME_MS);
            let wanted = now_ms.saturating_add(RESERVATION_TTL_MS).min(latest);
            lease.deadline_ms = lease.deadline_ms.max(wanted);
        }
        let change = self.keep_or_drop(lease);
        Some(Applied { landings, change })
    }

    fn land(
        &mut self,
        period: Period,
        key: &MeterKey,
        delta: &Tally,
    ) -> crate::reservation::Landing {
        use crate::reservation::Landing;
        if period != self.period {
            let (key, delta) = (key.clone(), *delta);
            return Landing::Past { period, key, delta };
        }
        let tally = self.tallies.entry(key.clone()).or_default();
        *tally = tally.plus(delta);
        Landing::Current(key.clone(), *tally)
    }

    fn keep_or_drop(&mut self, lease: Lease) -> LeaseChange {
        if lease.closed && lease.report.open().requests == 0 {
            return LeaseChange::Drop(lease.id);
        }
        self.leases.insert(lease.id, lease.clone());
        LeaseChange::Store(Box::new(lease))
    }

    /// Leases whose grace or deadline has passed at `now_ms`, one at a time so each
    /// change is stored before the next: a window closed (its unreported capacity
    /// freed), or a lease dropped.
    pub fn expire_lease(&mut self, now_ms: i64) -> Option<LeaseChange> {
        let due = self.leases.values().find(|l| l.next_deadline() <= now_ms)?;
        let mut lease = due.clone();
        self.leases.remove(&lease.id);
        if !lease.closed {
            lease.closed = true;
            self.lease_losses.unreturned = self.lease_losses.unreturned.saturating_add(1);
            return Some(self.keep_or_drop(lease));
        }
        let losses = &mut self.lease_losses;
        losses.expired_running = losses.expired_running.saturating_add(1);
        Some(LeaseChange::Drop(lease.id))
    }

    /// Requests running under leases, by their holders' last reports.
    pub fn leased_running(&self) -> u64 {
        let running = self.leases.values().map(|l| l.report.open().requests);
        running.sum()
    }

    /// The held part of every lease, added to the totals quota decisions see.
    pub(crate) fn lease_holds(&self) -> (Slice, Slice) {
        let mut period = Slice::default();
        let mut minute = Slice::default();
        for l in self.leases.values() {
            let hold = l.hold();
            if l.minute == self.window.index {
                minute = minute.plus(&hold);
            }
            period = period.plus(&hold);
        }
        (period, minute)
    }
}

/// A holder asking its counter for a lease, for the request it has to admit, with the
/// reports it owes (they free what its returned leases held).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseAsk {
    pub key_hash: String,
    pub ask: crate::request::AdmitAsk,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<Report>,
    pub now_ms: i64,
}

/// The counter's answer to a [`LeaseAsk`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseAnswer {
    /// A lease: its window is `window_ms` long from the grant.
    Granted {
        lease: u64,
        plan: String,
        grant: Grant,
        window_ms: i64,
        /// The minute window's requests and tokens after the grant.
        minute: (u64, u64),
    },
    /// No lease: the request was decided on its own (reserved, refused or rejected).
    Alone {
        admit: crate::protocol::AdmitResponse,
    },
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
