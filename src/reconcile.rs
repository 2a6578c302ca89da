//! Reconciliation: one customer's period seen from every step usage passes through,
//! side by side, with every difference flagged and its cause named. The steps are what
//! the counter metered (split into what the provider reported and what was
//! estimated), what the flush had acknowledged and what it still holds, and what the
//! ledger rated. They should satisfy metered = acknowledged + held (+ what was settled
//! since the counter's last push) and rated = acknowledged + the held records the
//! ledger already stored. Known causes explain the rest (an estimate replaced after it
//! was flushed, a record refused past the backdating window); anything else is an
//! unexplained difference, which an audit must look at.

use crate::flush::UsageRecord;
use crate::period::{period_at, Period};
use crate::tally::Tally;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One usage row of the counter: what it metered and what was acknowledged of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterRow {
    pub meter: String,
    pub model: String,
    pub metered: Tally,
    pub acknowledged: Tally,
    /// The period's final record was acknowledged: nothing more is to come.
    #[serde(default)]
    pub closed: bool,
}

/// The counter's side of a period: its rows and the records it handed to the flush
/// that are not acknowledged yet (waiting, in flight, or kept aside as dead letters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterView {
    pub period: Period,
    pub rows: Vec<CounterRow>,
    pub held: Vec<UsageRecord>,
    /// Settlements since the counter last took records: usage not handed over yet.
    #[serde(default)]
    pub settled_since_taken: u64,
}

/// The counter's period a reconciliation at `at_ms` reads: the current one when
/// `at_ms` is in it (it may have no rows yet, or have started early at a
/// close-period); else the latest period with rows that began by then, looked up with
/// `started_by`; else the anchor's period at that time.
pub fn counter_period<E>(
    current: Period,
    anchor_day: u32,
    at_ms: i64,
    started_by: impl FnOnce(i64) -> Result<Option<i64>, E>,
) -> Result<Period, E> {
    if current.start_ms <= at_ms && at_ms < current.end_ms {
        return Ok(current);
    }
    Ok(match started_by(at_ms)? {
        Some(start) => Period {
            start_ms: start,
            end_ms: at_ms.max(start) + 1,
        },
        None => period_at(at_ms, anchor_day),
    })
}

/// A past period as its rows have it: they may end later than planned (it was closed
/// early, or its end moved), and the latest row end is its end.
pub fn as_stored(period: Period, current: Period, row_ends: impl Iterator<Item = i64>) -> Period {
    match row_ends.max() {
        Some(end) if period != current => Period {
            start_ms: period.start_ms,
            end_ms: end,
        },
        _ => period,
    }
}

/// The ledger's side: its totals per (meter, model), and which of the held record ids
/// it has stored. `None` when another receiver rates this usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerView {
    pub totals: Vec<(String, String, Tally)>,
    pub stored_held: BTreeSet<String>,
    /// Held records the ledger refused for good, with why (past the backdating window).
    #[serde(default)]
    pub refused_held: BTreeMap<String, String>,
}

/// One meter and model through every step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub meter: String,
    pub model: String,
    pub metered: Tally,
    /// Input and output tokens as the provider reported them: metered less estimates.
    pub reported_input: u64,
    pub reported_output: u64,
    /// Requests, input and output tokens estimated (aborted streams, missing usage).
    pub estimated_requests: u64,
    pub estimated_input: u64,
    pub estimated_output: u64,
    pub acknowledged: Tally,
    /// Handed to the flush, not acknowledged yet.
    pub held: Tally,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rated: Option<Tally>,
}

/// A difference between two steps, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub meter: String,
    pub model: String,
    /// The steps compared, e.g. `metered - acknowledged`.
    pub between: String,
    /// The fields that differ, by how much (signed).
    pub amounts: BTreeMap<String, i64>,
    pub cause: String,
    pub explained: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub customer: String,
    pub livemode: bool,
    pub period: Period,
    pub lines: Vec<Trace>,
    pub differences: Vec<Gap>,
    /// Differences without a known cause: zero when every unit is accounted for.
    pub unexplained: u32,
    pub computed_at_ms: i64,
}

const LOST: &str = "the counter's tally and its flush bookkeeping disagree";
const STRAY: &str = "the ledger holds usage the counter did not hand over (another sender?), or lacks usage it acknowledged";

/// `a - b`, field by field, only the fields that differ.
pub fn difference(a: &Tally, b: &Tally) -> BTreeMap<String, i64> {
    let (a, b) = (fields(a), fields(b));
    a.into_iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((name, x), (_, y))| {
            let d = (i128::from(x) - i128::from(y)).clamp(i64::MIN.into(), i64::MAX.into());
            (name, d as i64)
        })
        .collect()
}

fn fields(t: &Tally) -> Vec<(String, u64)> {
    let value = serde_json::to_value(t).unwrap_or_default();
    let object = value.as_object().cloned().unwrap_or_default();
    object
        .into_iter()
        .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
        .collect()
}

/// Builds the report of a customer's period from the counter's and the ledger's views.
pub fn report(
    customer: &str,
    livemode: bool,
    counter: &CounterView,
    ledger: Option<&LedgerView>,
    now_ms: i64,
) -> Report {
    let key = |m: &str, n: &str| (m.to_string(), n.to_string());
    let mut lines: BTreeMap<(String, String), Trace> = BTreeMap::new();
    let mut closed: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &counter.rows {
        if row.closed {
            closed.insert(key(&row.meter, &row.model));
        }
        let line = lines.entry(key(&row.meter, &row.model)).or_default();
        line.metered = line.metered.plus(&row.metered);
        line.acknowledged = line.acknowledged.plus(&row.acknowledged);
    }
    let mut held_stored: BTreeMap<(String, String), (Tally, u64)> = BTreeMap::new();
    let mut held_count: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &counter.held {
        let delta = crate::flush::snapshot::delta_of(r);
        let line = lines.entry(key(&r.meter, &r.model)).or_default();
        line.held = line.held.plus(&delta);
        *held_count.entry(key(&r.meter, &r.model)).or_default() += 1;
        if ledger.is_some_and(|l| l.stored_held.contains(&r.id)) {
            let s = held_stored.entry(key(&r.meter, &r.model)).or_default();
            *s = (s.0.plus(&delta), s.1 + 1);
        }
    }
    if let Some(l) = ledger {
        for (meter, model, t) in &l.totals {
            let line = lines.entry(key(meter, model)).or_default();
            line.rated = Some(line.rated.unwrap_or_default().plus(t));
        }
    }
    let mut differences = Vec::new();
    for ((meter, model), line) in lines.iter_mut() {
        (line.meter, line.model) = (meter.clone(), model.clone());
        let m = &line.metered;
        (line.estimated_requests, line.estimated_input) = (m.estimated, m.estimated_input);
        line.estimated_output = m.estimated_output;
        line.reported_input = m.input.saturating_sub(m.estimated_input);
        line.reported_output = m.output.saturating_sub(m.estimated_output);
        if ledger.is_some() && line.rated.is_none() {
            line.rated = Some(Tally::default());
        }
        let mut flag = |between: &str, amounts: BTreeMap<String, i64>, cause: String, ok| {
            if !amounts.is_empty() {
                differences.push(Gap {
                    meter: meter.clone(),
                    model: model.clone(),
                    between: between.into(),
                    amounts,
                    cause,
                    explained: ok,
                });
            }
        };
        let estimated = Tally {
            input: m.estimated_input,
            output: m.estimated_output,
            ..Tally::default()
        };
        let reported = m.minus(&estimated);
        let why = format!(
            "{} request(s) estimated: the provider reported no usage (a stream cut off, or its usage never came)",
            m.estimated
        );
        flag("metered - reported", difference(m, &reported), why, true);
        let held = held_count.get(&(meter.clone(), model.clone()));
        // A gap is explained only when what is held covers it exactly; otherwise the
        // whole gap is flagged once, unexplained.
        let books = line.acknowledged.plus(&line.held);
        let untaken = difference(m, &books);
        let open = !closed.contains(&(meter.clone(), model.clone()));
        let pending = counter.settled_since_taken;
        let replaced = line.acknowledged.estimated.saturating_sub(m.estimated);
        if untaken.values().all(|&n| n > 0) && open && pending > 0 {
            // Settled after the counter last took records: it goes with the next push.
            let why = format!("{pending} settlement(s) since the counter's last push: not handed to the flush yet");
            flag("metered - (acknowledged + held)", untaken, why, true);
        } else if replaced > 0 {
            // Records only ever add: a lower real usage cannot be sent after its
            // estimate was, so the ledger keeps the estimate.
            let why = format!("{replaced} estimated request(s) settled with the provider's report after their estimate was flushed: the ledger keeps billing the estimate");
            flag("metered - (acknowledged + held)", untaken, why, true);
        } else {
            flag(
                "metered - (acknowledged + held)",
                untaken,
                LOST.into(),
                false,
            );
        }
        if line.held != Tally::default() {
            let why = format!("{} record(s) handed to the flush, not acknowledged yet (waiting, in flight, or kept aside)", held.unwrap_or(&0));
            let amounts = difference(&line.held, &Tally::default());
            flag("held", amounts, why, true);
        }
        // A held record the ledger refused for good is never billed: named, with why.
        let refused = counter
            .held
            .iter()
            .filter(|r| (&r.meter, &r.model) == (meter, model));
        for r in refused {
            if let Some(reason) = ledger.and_then(|l| l.refused_held.get(&r.id)) {
                let amounts = difference(&crate::flush::snapshot::delta_of(r), &Tally::default());
                let why = format!(
                    "record {} refused by the ledger, never billed: {reason}",
                    r.id
                );
                flag("held (refused)", amounts, why, true);
            }
        }
        let Some(rated) = line.rated else { continue };
        let (stored, n) = held_stored
            .get(&(meter.clone(), model.clone()))
            .copied()
            .unwrap_or_default();
        let expected = line.acknowledged.plus(&stored);
        if rated == expected {
            let why = format!("{n} record(s) stored by the ledger whose acknowledgement has not reached the counter yet");
            flag(
                "rated - acknowledged",
                difference(&rated, &line.acknowledged),
                why,
                true,
            );
        } else {
            let between = "rated - (acknowledged + stored held)";
            flag(between, difference(&rated, &expected), STRAY.into(), false);
        }
    }
    let unexplained = differences.iter().filter(|d| !d.explained).count() as u32;
    Report {
        customer: customer.to_string(),
        livemode,
        period: counter.period,
        lines: lines.into_values().collect(),
        differences,
        unexplained,
        computed_at_ms: now_ms,
    }
}

/// At most this many customers are named in a summary's lists.
const NAMED: usize = 100;

/// A fleet's reconciliation, added up report by report: each flush shard adds up its
/// customers', the admin API the shards'.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    pub customers: u64,
    pub unexplained: u64,
    /// Customers with an unexplained difference, to look at first (at most 100).
    pub customers_unexplained: Vec<String>,
    pub metered: Tally,
    pub acknowledged: Tally,
    pub held: Tally,
    /// What the built-in ledger rated, where it rates.
    pub rated: Tally,
    /// Customers whose report could not be made, and with why (at most 100 named).
    pub failed_count: u64,
    pub failed: Vec<(String, String)>,
}

impl FleetSummary {
    pub fn add(&mut self, r: &Report) {
        self.customers += 1;
        self.unexplained += u64::from(r.unexplained);
        if r.unexplained > 0 && self.customers_unexplained.len() < NAMED {
            let who = crate::flush::owner_key(&r.customer, r.livemode);
            self.customers_unexplained.push(who);
        }
        for l in &r.lines {
            self.metered = self.metered.plus(&l.metered);
            self.acknowledged = self.acknowledged.plus(&l.acknowledged);
            self.held = self.held.plus(&l.held);
            self.rated = self.rated.plus(&l.rated.unwrap_or_default());
        }
    }

    pub fn fail(&mut self, who: &str, why: String) {
        self.failed_count += 1;
        if self.failed.len() < NAMED {
            self.failed.push((who.to_string(), why));
        }
    }

    pub fn merge(&mut self, o: FleetSummary) {
        self.customers += o.customers;
        self.unexplained += o.unexplained;
        let room = NAMED.saturating_sub(self.customers_unexplained.len());
        self.customers_unexplained
            .extend(o.customers_unexplained.into_iter().take(room));
        self.metered = self.metered.plus(&o.metered);
        self.acknowledged = self.acknowledged.plus(&o.acknowledged);
        self.held = self.held.plus(&o.held);
        self.rated = self.rated.plus(&o.rated);
        self.failed_count += o.failed_count;
        let room = NAMED.saturating_sub(self.failed.len());
        self.failed.extend(o.failed.into_iter().take(room));
    }
}

impl Report {
    /// Whether to look once more: the counter and the ledger are asked one after the
    /// other, so usage moving between them meanwhile shows as unexplained for a moment.
    pub fn needs_second_look(&self) -> bool {
        self.unexplained > 0
    }
}

/// The report shown as the one at finalization: the report kept when the period
/// became final; for a period finalized while the counter could not be asked, the
/// first one read after, `now`, which is then to be kept (the `bool`). A kept report
/// is shown as it was kept, whatever shape reports have since.
pub fn at_finalization<T>(kept: Option<T>, is_final: bool, now: T) -> (Option<T>, bool) {
    match kept {
        Some(kept) => (Some(kept), false),
        None if is_final => (Some(now), true),
        None => (None, false),
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
