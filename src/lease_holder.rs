//! Quota leases, the holder's side: the leases one isolate holds, admitting requests
//! against them with no call to the counter, and the cumulative reports it owes.
//!
//! The Workers runtime has no timers outside a request and a request cannot await
//! another's I/O, so the book only decides; the edge sends what [`LeaseBook::take`]
//! gives from a request's own `wait_until`, within [`REPORT_MS`] of each change
//! ([`LeaseBook::schedule`]).

use crate::lease::{Grant, Report, Slice, RELEASE_GRACE_MS, REPORT_CHANGES, REPORT_MS};
use crate::tally::{MeterKey, Tally};
use crate::usage::Usage;
use std::collections::BTreeMap;

/// One lease as its holder keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub plan: String,
    pub grant: Grant,
    /// The end of its window by the holder's clock: the granted length counted from
    /// when the holder asked, so it never ends after the counter's.
    pub until_ms: i64,
    /// The counter's minute window at the grant (requests, tokens), this lease's whole
    /// hold included: what the rate-limit headers of its requests say.
    pub minute: (u64, u64),
    report: Report,
    /// The report sequence sent (or being sent).
    sent: u64,
    /// When the oldest change not sent was made.
    waiting_since: Option<i64>,
}

impl Held {
    /// A lease granted for `window_ms` to a holder that asked at `asked_ms`.
    pub fn new(id: u64, plan: String, grant: Grant, asked_ms: i64, window_ms: i64) -> Held {
        Held {
            plan,
            grant,
            until_ms: asked_ms.saturating_add(window_ms),
            minute: (0, 0),
            report: Report {
                lease: id,
                ..Report::default()
            },
            sent: 0,
            waiting_since: None,
        }
    }

    fn change(&mut self, now_ms: i64) {
        self.report.seq += 1;
        self.waiting_since.get_or_insert(now_ms);
    }

    fn admit(&mut self, one: &Slice, now_ms: i64) -> bool {
        let open = !self.report.done && now_ms < self.until_ms;
        if !open || !self.grant.fits(&self.report, one) {
            return false;
        }
        self.report.admitted = self.report.admitted.plus(one);
        self.change(now_ms);
        true
    }

    fn finish(&mut self, one: &Slice, used: Option<(&MeterKey, &Usage, bool)>, now_ms: i64) {
        self.report.finished = self.report.finished.plus(one);
        if let Some((key, usage, estimated)) = used {
            let found = self.report.usage.iter_mut().find(|(k, _)| k == key);
            match found {
                Some((_, t)) => t.add(usage, estimated),
                None => self
                    .report
                    .usage
                    .push((key.clone(), Tally::one(usage, estimated))),
            }
        }
        self.change(now_ms);
    }

    fn retire(&mut self, now_ms: i64) {
        if !self.report.done {
            self.report.done = true;
            self.change(now_ms);
        }
    }

    fn unsent(&self) -> u64 {
        self.report.seq.saturating_sub(self.sent)
    }

    fn due(&self, now_ms: i64) -> bool {
        let aged = self.waiting_since.is_some_and(|t| now_ms - t >= REPORT_MS);
        self.unsent() >= REPORT_CHANGES || (self.unsent() > 0 && aged)
    }

    /// Its whole life is reported: nothing more can change.
    fn over(&self) -> bool {
        self.report.done && self.report.open().requests == 0 && self.unsent() == 0
    }
}

/// What a request does after changing a lease: send the counter's reports now, wait
/// until a time and then send, or nothing, since a waiter already pending carries the
/// change. So a busy isolate keeps one timer per counter, not one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Now,
    At(i64),
    Pending,
}

/// Where a request admitted under a lease is to be finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub counter: String,
    pub lease: u64,
    pub plan: String,
    pub bounds: Slice,
    /// The counter's minute window as the lease saw it (see [`Held::minute`]).
    pub minute: (u64, u64),
}

/// Every lease an isolate holds: per holder (a counter and key) the one it admits
/// under now, and the retired ones until their last report is sent.
///
/// Leases are kept per counter, so what a request does to its own counter's leases
/// costs the same however many other customers the isolate has served.
#[derive(Debug, Default)]
pub struct LeaseBook {
    current: BTreeMap<String, (String, u64)>,
    held: BTreeMap<String, BTreeMap<u64, Held>>,
    /// Per counter, when its pending report waiter wakes.
    waiters: BTreeMap<String, i64>,
    /// When holders and waiters that no longer count were last forgotten.
    swept_ms: i64,
}

impl LeaseBook {
    /// The plan of the lease `holder` admits under, if it still may.
    pub fn plan(&self, holder: &str, now_ms: i64) -> Option<&str> {
        let (counter, lease) = self.current.get(holder)?;
        let held = self.held.get(counter)?.get(lease)?;
        (now_ms < held.until_ms && !held.report.done).then_some(held.plan.as_str())
    }

    /// Admits a request needing `one` under `holder`'s lease, or `None` when there is
    /// none or it is spent: then the counter decides.
    pub fn admit(&mut self, holder: &str, one: &Slice, now_ms: i64) -> Option<Admission> {
        let (counter, lease) = self.current.get(holder)?.clone();
        let held = self.held_mut(&counter, lease)?;
        held.admit(one, now_ms).then(|| Admission {
            counter,
            lease,
            plan: held.plan.clone(),
            bounds: one.clone(),
            minute: held.minute,
        })
    }

    /// Retires `holder`'s lease (spent or ended): its next report says it is done.
    /// Returns the reports that then wait for `counter`, to carry with the next ask.
    pub fn retire(&mut self, holder: &str, now_ms: i64) -> Vec<Report> {
        let Some((counter, lease)) = self.current.remove(holder) else {
            return vec![];
        };
        if let Some(held) = self.held_mut(&counter, lease) {
            held.retire(now_ms);
        }
        self.take(&counter)
    }

    /// Retires every lease of `counter` (a key was revoked, the plan or credits changed
    /// through this isolate): its next requests ask the counter again.
    pub fn retire_counter(&mut self, counter: &str, now_ms: i64) {
        let holders: Vec<String> = self
            .current
            .iter()
            .filter(|(_, (c, _))| c == counter)
            .map(|(h, _)| h.clone())
            .collect();
        for h in holders {
            if let Some((c, lease)) = self.current.remove(&h) {
                if let Some(held) = self.held_mut(&c, lease) {
                    held.retire(now_ms);
                }
            }
        }
    }

    /// Holds a new lease for `holder`, from `counter`. One it replaces (another request
    /// asked at the same time) is retired, so its next report returns what it has left.
    pub fn install(&mut self, holder: &str, counter: &str, lease: u64, held: Held, now: i64) {
        let at = (counter.to_string(), lease);
        if let Some((c, old)) = self.current.insert(holder.to_string(), at) {
            if let Some(replaced) = self.held_mut(&c, old) {
                replaced.retire(now);
            }
        }
        let leases = self.held.entry(counter.to_string()).or_default();
        leases.insert(lease, held);
        if now >= self.swept_ms.saturating_add(RELEASE_GRACE_MS) {
            self.sweep(now);
        }
    }

    /// Forgets, at most once a grace period, the holders whose lease is gone (its
    /// last report was taken) and the waiters whose time passed, so a key that went
    /// quiet does not stay in the book for the isolate's life. A lease itself leaves
    /// only through [`LeaseBook::take`], once nothing about it can change.
    fn sweep(&mut self, now_ms: i64) {
        self.swept_ms = now_ms;
        let held = &self.held;
        self.current
            .retain(|_, (c, lease)| held.get(c).is_some_and(|l| l.contains_key(lease)));
        self.waiters
            .retain(|_, at| now_ms < at.saturating_add(REPORT_MS));
    }

    /// A request admitted under a lease finished: `used` is what it used (`None` when
    /// it was released, costing nothing).
    pub fn finish(&mut self, a: &Admission, used: Option<(&MeterKey, &Usage, bool)>, now: i64) {
        if let Some(held) = self.held_mut(&a.counter, a.lease) {
            held.finish(&a.bounds, used, now);
        }
    }

    /// What to do so `counter`'s changes are reported within [`REPORT_MS`]: send now
    /// when a report is due; else leave it to a pending waiter; else wait. A waiter
    /// whose time passed long ago (its request was cancelled) no longer counts.
    pub fn schedule(&mut self, counter: &str, now_ms: i64) -> Wake {
        if self.due(counter, now_ms) {
            return Wake::Now;
        }
        if let Some(&at) = self.waiters.get(counter) {
            if now_ms < at.saturating_add(REPORT_MS) {
                return Wake::Pending;
            }
        }
        let at = now_ms.saturating_add(REPORT_MS);
        self.waiters.insert(counter.to_string(), at);
        Wake::At(at)
    }

    /// `counter`'s waiter woke: it sends now, and the next change schedules anew.
    pub fn woke(&mut self, counter: &str) {
        self.waiters.remove(counter);
    }

    /// Marks a running request's lease changed, so its next report (a heartbeat)
    /// moves its deadline.
    pub fn touch(&mut self, a: &Admission, now_ms: i64) {
        if let Some(held) = self.held_mut(&a.counter, a.lease) {
            held.change(now_ms);
        }
    }

    /// Whether `counter` has a report due at `now_ms` (old enough, or enough changes).
    pub fn due(&self, counter: &str, now_ms: i64) -> bool {
        self.of(counter).any(|h| h.due(now_ms))
    }

    /// Every report `counter` is owed and has not been sent, marked sent. Leases
    /// whose window is over by `now_ms` say they are done.
    pub fn take_at(&mut self, counter: &str, now_ms: i64) -> Vec<Report> {
        for held in self
            .held
            .get_mut(counter)
            .into_iter()
            .flat_map(|l| l.values_mut())
        {
            if now_ms >= held.until_ms {
                held.retire(now_ms);
            }
        }
        self.take(counter)
    }

    fn take(&mut self, counter: &str) -> Vec<Report> {
        let mut out = vec![];
        let Some(leases) = self.held.get_mut(counter) else {
            return out;
        };
        for held in leases.values_mut().filter(|h| h.unsent() > 0) {
            held.sent = held.report.seq;
            held.waiting_since = None;
            out.push(held.report.clone());
        }
        leases.retain(|_, h| !h.over());
        if leases.is_empty() {
            self.held.remove(counter);
        }
        out
    }

    /// Reports that did not reach the counter: sent again with the next batch (each
    /// is cumulative, so the newest carries the rest).
    pub fn failed(&mut self, counter: &str, reports: &[Report], now_ms: i64) {
        for r in reports {
            let leases = self.held.entry(counter.to_string()).or_default();
            let held = leases.entry(r.lease).or_insert_with(|| Held {
                plan: String::new(),
                grant: Grant::default(),
                until_ms: 0,
                minute: (0, 0),
                report: r.clone(),
                sent: 0,
                waiting_since: None,
            });
            // An older batch failing after a newer one was taken (or after the lease was
            // forgotten and made again from it) must not replace what the newer carries.
            if r.seq > held.report.seq {
                held.report = r.clone();
            }
            held.sent = held.sent.min(r.seq.saturating_sub(1));
            held.waiting_since.get_or_insert(now_ms);
        }
    }

    fn of(&self, counter: &str) -> impl Iterator<Item = &Held> {
        self.held.get(counter).into_iter().flat_map(|l| l.values())
    }

    fn held_mut(&mut self, counter: &str, lease: u64) -> Option<&mut Held> {
        self.held.get_mut(counter)?.get_mut(&lease)
    }

    /// How many holders have a current lease entry.
    pub fn holders(&self) -> usize {
        self.current.len()
    }

    /// How many leases the book holds (for the metrics).
    pub fn len(&self) -> usize {
        self.held.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
#[path = "lease_holder_tests.rs"]
mod tests;
