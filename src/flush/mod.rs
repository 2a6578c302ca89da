//! Flushing usage to a rating endpoint: records with deterministic ids, batches with
//! deterministic ids, Stripe-style signatures, and the three wire formats. Delivery is
//! at least once (a retry resends the same ids); the receiver dedupes by id, so the
//! effect is exactly once.

pub mod delivery;
mod formats;
pub mod outbox;
pub mod push;
pub mod snapshot;
pub mod wake;

pub use formats::{endpoint, records_of, render, render_for, Format, Subscriptions};

use crate::keys::hex;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Records per request by default (Lago accepts at most 100 per batch).
pub const DEFAULT_BATCH_RECORDS: usize = 500;

/// One customer × period × meter × model delta, covering counter sequence numbers
/// `seq_from..=seq_to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: String,
    pub customer: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub meter: String,
    pub model: String,
    pub seq_from: u64,
    pub seq_to: u64,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub images: u64,
    /// Audio or video duration, in milliseconds (schema 3; before, whole seconds in
    /// `seconds`, read into `legacy_seconds`).
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default, rename = "seconds", skip_serializing_if = "is_zero")]
    pub legacy_seconds: u64,
    /// Requests whose usage was estimated (the provider reported none).
    pub estimated: u64,
    /// Parts of `input_tokens` written to the prompt cache (default duration, one
    /// hour) and audio input tokens. Absent in records before schema 2.
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub cache_write_1h_tokens: u64,
    #[serde(default)]
    pub audio_tokens: u64,
    /// The customer's plan when the usage was recorded: the one plan assignment,
    /// which the rating endpoint rates the period under. Empty before schema 2.
    #[serde(default)]
    pub plan: String,
    /// The record layout's version ([`RECORD_SCHEMA`]); records without one are 1.
    #[serde(default = "schema_one")]
    pub schema: u32,
    /// The period is over and this is its last record for this meter and model.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// When the counter took this snapshot; a retry resends the same value.
    pub recorded_at_ms: i64,
    /// False for usage of `em_test_` keys: kept apart from live usage, as its own
    /// invoices, and part of the id so the two never dedupe each other away.
    #[serde(default = "live")]
    pub livemode: bool,
    /// The parts of `input_tokens` and `output_tokens` that were estimated (the
    /// provider reported none, or the stream was cut): the rest is what it reported.
    #[serde(default)]
    pub estimated_input_tokens: u64,
    #[serde(default)]
    pub estimated_output_tokens: u64,
}

impl Default for UsageRecord {
    fn default() -> Self {
        UsageRecord {
            id: String::new(),
            customer: String::new(),
            period_start_ms: 0,
            period_end_ms: 0,
            meter: String::new(),
            model: String::new(),
            seq_from: 0,
            seq_to: 0,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0,
            images: 0,
            duration_ms: 0,
            legacy_seconds: 0,
            estimated: 0,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            audio_tokens: 0,
            plan: String::new(),
            schema: RECORD_SCHEMA,
            is_final: false,
            recorded_at_ms: 0,
            livemode: true,
            estimated_input_tokens: 0,
            estimated_output_tokens: 0,
        }
    }
}

impl UsageRecord {
    /// The id this record's content determines ([`record_id`], with the mode).
    pub fn content_id(&self) -> String {
        let seq = (self.seq_from, self.seq_to);
        let (start, meter, model) = (self.period_start_ms, &self.meter, &self.model);
        let live = record_id(&self.customer, start, meter, model, seq, self.is_final);
        match self.livemode {
            true => live,
            false => format!(
                "rec_{}",
                &hex(&Sha256::digest(format!("{live}|test")))[..32]
            ),
        }
    }
}

/// The record layout this version writes. 2 added cache writes, audio tokens and the
/// plan; 3 the mode and the estimated parts of the token counts.
pub const RECORD_SCHEMA: u32 = 3;

fn schema_one() -> u32 {
    1
}

fn live() -> bool {
    true
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The deterministic id of a record: the same delta always gets the same id.
pub fn record_id(
    customer: &str,
    period_start_ms: i64,
    meter: &str,
    model: &str,
    seq: (u64, u64),
    is_final: bool,
) -> String {
    let text = format!(
        "{customer}|{period_start_ms}|{meter}|{model}|{}|{}|{is_final}",
        seq.0, seq.1
    );
    format!("rec_{}", &hex(&Sha256::digest(text.as_bytes()))[..32])
}

/// Whose records a row, an outbox entry or a Ledger holds: the customer, or for test
/// usage `test:<customer>` (a customer id never holds a colon), so test and live
/// usage never share a total, an acknowledgement or an invoice.
pub fn owner_key(customer: &str, livemode: bool) -> String {
    match livemode {
        true => customer.to_string(),
        false => format!("test:{customer}"),
    }
}

/// Records waiting to be sent, grouped by owner ([`owner_key`]).
pub type Waiting = Vec<(String, Vec<UsageRecord>)>;

/// Where test usage goes, from `RATING_URL` and `EXPORT_TEST_USAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestUsageRoute {
    /// `RATING_URL=internal`: the built-in ledger is the receiver.
    pub receiver_is_internal: bool,
    /// `EXPORT_TEST_USAGE=true`: an external receiver gets test usage too.
    pub export_test: bool,
}

impl TestUsageRoute {
    pub fn from_settings(rating_url: Option<&str>, export_test_usage: Option<&str>) -> Self {
        TestUsageRoute {
            receiver_is_internal: rating_url == Some("internal"),
            export_test: export_test_usage == Some("true"),
        }
    }
}

/// Splits waiting records into what goes to the configured receiver and the test usage
/// kept for the built-in ledger's test invoices. Test usage reaches the configured
/// receiver only when it is the built-in ledger itself or `export_test` asks for it.
pub fn split_test_usage(
    waiting: Waiting,
    receiver_is_internal: bool,
    export_test: bool,
) -> (Waiting, Waiting) {
    if receiver_is_internal || export_test {
        return (waiting, Vec::new());
    }
    waiting
        .into_iter()
        .partition(|(_, records)| records.iter().all(|r| r.livemode))
}

/// Whether the built-in ledger rates usage of this mode ([`split_test_usage`]'s rule):
/// all of it with `RATING_URL=internal`, and test usage an external receiver is not
/// sent.
pub fn rated_by_builtin(receiver_is_internal: bool, livemode: bool, export_test: bool) -> bool {
    receiver_is_internal || (!livemode && !export_test)
}

/// Whether a dead letter of these owners ([`owner_key`]s) goes back to the built-in
/// ledger rather than the configured receiver: a letter of test usage only, when the
/// configured receiver is external and test usage is not exported.
pub fn requeue_home(owners: &[&str], receiver_is_internal: bool, export_test: bool) -> bool {
    let test_only = !owners.is_empty() && owners.iter().all(|o| o.starts_with("test:"));
    test_only && !receiver_is_internal && !export_test
}

/// The registry shard (of `shards`) a customer registers in.
pub fn shard_for(customer: &str, shards: u32) -> u32 {
    let h = Sha256::digest(customer.as_bytes());
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % shards.max(1)
}

/// A batch of records for one request, with an id derived from its records' ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub records: Vec<UsageRecord>,
}

impl Batch {
    pub fn new(mut records: Vec<UsageRecord>) -> Batch {
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let mut h = Sha256::new();
        for r in &records {
            h.update(r.id.as_bytes());
            h.update(b"\n");
        }
        Batch {
            batch_id: format!("bat_{}", &hex(&h.finalize())[..32]),
            records,
        }
    }
}

/// Splits records into batches of at most `size` (at least 1).
pub fn batches(records: Vec<UsageRecord>, size: usize) -> Vec<Batch> {
    let size = size.max(1);
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(size));
        out.push(Batch::new(rest));
        rest = tail;
    }
    out
}

/// Packs customers' records into batches of at most `size`, keeping each customer's
/// records together where they fit, so one acknowledgement settles a customer. Each
/// batch lists the customers it carries records of.
pub fn pack(customers: Vec<(String, Vec<UsageRecord>)>, size: usize) -> Vec<(Batch, Vec<String>)> {
    let size = size.max(1);
    let mut out = Vec::new();
    let (mut records, mut names): (Vec<UsageRecord>, Vec<String>) = (Vec::new(), Vec::new());
    for (customer, recs) in customers.into_iter().filter(|(_, r)| !r.is_empty()) {
        if !records.is_empty() && records.len() + recs.len() > size {
            out.push((
                Batch::new(std::mem::take(&mut records)),
                std::mem::take(&mut names),
            ));
        }
        if recs.len() > size {
            for batch in batches(recs, size) {
                out.push((batch, vec![customer.clone()]));
            }
            continue;
        }
        records.extend(recs);
        names.push(customer);
    }
    if !records.is_empty() {
        out.push((Batch::new(records), names));
    }
    out
}

/// Milliseconds to wait after `failures` consecutive failed runs: `base`, doubling, at
/// most an hour.
pub fn backoff_ms(failures: u32, base_ms: i64) -> i64 {
    let doubled = base_ms.saturating_mul(1i64 << failures.saturating_sub(1).min(20));
    doubled.min(3_600_000)
}

/// `X-Edgemeter-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &str, unix_s: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{unix_s}.").as_bytes());
    mac.update(body);
    format!("t={unix_s},v1={}", hex(&mac.finalize().into_bytes()))
}

/// Whether a signature header has a MAC and a timestamp within `tolerance_s` of now:
/// checked before a signed body is read, so a stale or unsigned sender cannot make the
/// receiver buffer anything. The same reading as the MAC check's (`signature_parts`),
/// so a header with two timestamps is judged by the same one both times.
pub fn signature_fresh(header: &str, now_s: i64, tolerance_s: i64) -> bool {
    signature_parts(header, now_s, tolerance_s).is_some()
}

/// A signature header's timestamp and `v1` MAC, when it has both and the timestamp is
/// within `tolerance_s` of now: what is left to check is the MAC of `"t.body"`.
pub fn signature_parts(header: &str, now_s: i64, tolerance_s: i64) -> Option<(i64, &str)> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (t, v1) = (t?, v1?);
    ((now_s - t).abs() <= tolerance_s).then_some((t, v1))
}

/// Whether `v1` (from the header) is `expected_hex`, the MAC of `"t.body"`, compared in
/// constant time.
pub fn mac_matches(expected_hex: &str, v1: &str) -> bool {
    crate::keys::same_hash(expected_hex, v1)
}

/// Checks a signature header against `body`, in constant time, allowing `tolerance_s`
/// of clock skew: the native check (the receivers' fakes); the edge computes the MAC
/// with WebCrypto (`edge::signing`).
pub fn verify(secret: &str, header: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> bool {
    let Some((t, v1)) = signature_parts(header, now_s, tolerance_s) else {
        return false;
    };
    let expected = signature(secret, t, body);
    mac_matches(&expected[expected.len() - 64..], v1)
}

#[cfg(test)]
mod tests;
