//! What the engine rates: usage already aggregated per customer × period × plan segment ×
//! meter × model, plus the per-transaction values that percentage charges price.

use crate::period::Period;
use crate::tally::Tally;
use crate::usage::Usage;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds in a UTC day; proration counts whole UTC days.
pub const DAY_MS: i64 = 86_400_000;

/// A billable dimension. The mapping from a request's [`Usage`] (see [`meter_totals`]):
///
/// | meter                 | units                                   |
/// |-----------------------|-----------------------------------------|
/// | `input_tokens`        | `input` less cache reads, cache writes and audio: fresh prompt tokens |
/// | `cached_input_tokens` | `cached`: prompt tokens served from cache |
/// | `cache_write_tokens`  | `cache_write`: prompt tokens written to the cache (default duration) |
/// | `cache_write_1h_tokens` | `cache_write_1h`: prompt tokens written to the cache for an hour |
/// | `audio_input_tokens`  | `audio`: audio prompt tokens            |
/// | `output_tokens`       | `output`, reasoning tokens included     |
/// | `requests`            | one per metered request                 |
/// | `images`              | `images`                                |
/// | `seconds`             | `duration_ms` / 1000: audio or video duration, counted in milliseconds |
/// | `transaction_value`   | a money value per transaction (percentage charges only) |
///
/// Reasoning tokens are not a meter of their own: they are already part of `output`, and
/// pricing them twice is the mistake this enum is shaped to prevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillableMeter {
    InputTokens,
    CachedInputTokens,
    CacheWriteTokens,
    #[serde(rename = "cache_write_1h_tokens")]
    CacheWrite1hTokens,
    AudioInputTokens,
    OutputTokens,
    Requests,
    Images,
    Seconds,
    TransactionValue,
}

impl BillableMeter {
    /// The meter's name as written in JSON.
    pub fn name(self) -> &'static str {
        match self {
            BillableMeter::InputTokens => "input_tokens",
            BillableMeter::CachedInputTokens => "cached_input_tokens",
            BillableMeter::CacheWriteTokens => "cache_write_tokens",
            BillableMeter::CacheWrite1hTokens => "cache_write_1h_tokens",
            BillableMeter::AudioInputTokens => "audio_input_tokens",
            BillableMeter::OutputTokens => "output_tokens",
            BillableMeter::Requests => "requests",
            BillableMeter::Images => "images",
            BillableMeter::Seconds => "seconds",
            BillableMeter::TransactionValue => "transaction_value",
        }
    }

    /// How many counted units make one priced unit: durations are counted in
    /// milliseconds and priced in seconds, so fractions of a second are exact.
    pub fn counted_per_unit(self) -> u64 {
        match self {
            BillableMeter::Seconds => 1000,
            _ => 1,
        }
    }
}

/// Units of one meter used with one model in one plan segment. Counters are integers
/// (at most 2^53 − 1, so they stay exact in JavaScript); `transaction_value` is not a
/// valid meter here, transactions go in [`Segment::transactions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterTotal {
    pub meter: BillableMeter,
    pub model: String,
    /// Counted units ([`BillableMeter::counted_per_unit`] of them make one priced unit).
    pub units: u64,
}

/// One transaction a percentage charge prices, valued in the price book currency (for
/// example the upstream cost of a request that is resold at a markup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub model: String,
    pub value: Decimal,
}

/// The time a customer spent on one plan within the period, and what they used on it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// The plan's name in the price book.
    pub plan: String,
    /// When the plan took effect, within the period; the first segment normally starts
    /// at the period start. The UTC day containing this instant counts for this plan.
    pub from_ms: i64,
    #[serde(default)]
    pub usage: Vec<MeterTotal>,
    #[serde(default)]
    pub transactions: Vec<Transaction>,
}

/// Everything to rate one customer's period. Time comes in as numbers: no clock is read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingInput {
    /// The billing period `[start_ms, end_ms)`, counted in whole UTC days.
    pub period: Period,
    /// Plan segments in time order; one segment when the plan did not change.
    pub segments: Vec<Segment>,
    /// The instant credits are drawn at: a grant must be effective and unexpired then.
    pub as_of_ms: i64,
    /// Corrections to earlier periods' final invoices that this invoice carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjustments: Vec<Adjustment>,
}

/// A correction to an earlier period's final invoice (which never changes), carried on
/// a later one: what that period owes now less what it was billed, in the invoice
/// currency, already in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    pub period: Period,
    pub reason: String,
    pub net: Decimal,
    pub tax: Decimal,
}

impl RatingInput {
    /// A whole period on one plan, with usage only (no plan change, no transactions).
    pub fn single(
        plan: &str,
        period: Period,
        usage: Vec<MeterTotal>,
        as_of_ms: i64,
    ) -> RatingInput {
        let segment = Segment {
            plan: plan.to_string(),
            from_ms: period.start_ms,
            usage,
            transactions: vec![],
        };
        RatingInput {
            period,
            segments: vec![segment],
            as_of_ms,
            adjustments: Vec::new(),
        }
    }
}

/// The UTC day after a period's last: a period that ends on the day it starts (closed
/// early on its first day) still counts that one day.
fn end_day(period: &Period) -> i64 {
    utc_day(period.end_ms).max(utc_day(period.start_ms) + 1)
}

/// The UTC days a period counts for proration, at least one.
pub fn period_days(period: &Period) -> i64 {
    end_day(period) - utc_day(period.start_ms)
}

/// The UTC day number (days since 1970-01-01) containing `ms`.
pub fn utc_day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Days of the period each segment covers, the change day counted for the new plan:
/// `[utc_day(from), utc_day(next from))`, the period's end day excluded. A first segment
/// starting after the period start (a customer who joined mid-period) covers fewer days.
pub fn segment_days(period: &Period, segments: &[Segment]) -> Vec<i64> {
    let end = end_day(period);
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let stop = segments.get(i + 1).map_or(end, |n| utc_day(n.from_ms));
            stop - utc_day(s.from_ms)
        })
        .collect()
}

/// The meter totals of one model's aggregated [`Usage`] plus its request count, by the
/// mapping documented on [`BillableMeter`]. Zero totals are left out.
pub fn meter_totals(model: &str, usage: &Usage, requests: u64) -> Vec<MeterTotal> {
    let input = usage.input_parts();
    [
        (BillableMeter::InputTokens, input.fresh),
        (BillableMeter::CachedInputTokens, input.cached),
        (BillableMeter::CacheWriteTokens, input.cache_write),
        (BillableMeter::CacheWrite1hTokens, input.cache_write_1h),
        (BillableMeter::AudioInputTokens, input.audio),
        (BillableMeter::OutputTokens, usage.output),
        (BillableMeter::Requests, requests),
        (BillableMeter::Images, usage.images),
        (BillableMeter::Seconds, usage.duration_ms),
    ]
    .into_iter()
    .filter(|&(_, units)| units > 0)
    .map(|(meter, units)| MeterTotal {
        meter,
        model: model.to_string(),
        units,
    })
    .collect()
}
/// Billable meter totals of tallies: all meters of a model together, mapped by the
/// rating engine's rules (uncached and cached input, output, requests, images, seconds).
pub fn usage_totals<'a>(
    tallies: impl IntoIterator<Item = (&'a str, &'a Tally)>,
) -> Vec<MeterTotal> {
    let mut by_model: BTreeMap<&str, Tally> = BTreeMap::new();
    for (model, t) in tallies {
        let sum = by_model.entry(model).or_default();
        *sum = sum.plus(t);
    }
    by_model
        .iter()
        .flat_map(|(model, t)| meter_totals(model, &t.usage(), t.requests))
        .collect()
}
