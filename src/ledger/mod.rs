//! The rating endpoint's pure side: checking an incoming batch strictly before anything
//! of it is stored, and turning a customer's stored totals into the rating engine's
//! input. Storage and HTTP live in `edge::ledger`.

use crate::flush::UsageRecord;
use crate::keys::valid_customer_id;
use crate::period::Period;
use crate::rating::{usage_totals, RatingInput};
use crate::tally::Tally;

pub mod account;
pub mod books;
mod ingest;
pub use ingest::{
    ingest, keys_of, take, Changes, Ingested, Known, MemoryStore, PeriodBook, Total, TotalKey,
};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How many Ledger shards there are. A customer's ledger (both modes) lives in one of
/// them, next to other customers', so a flush batch of many customers' records takes
/// a handful of calls, not one per customer. Fixed: changing it moves customers to
/// other shards, where their ledgers would look empty, so it needs a data migration.
/// Equal to the default `FLUSH_SHARDS`, with the same hash: a flush batch holds one
/// flush shard's customers, who then all live in one Ledger shard (one call, one
/// transaction per batch).
pub const LEDGER_SHARDS: u32 = 16;

/// The name of the Ledger shard that keeps an owner's ledger (a customer id, or a
/// `flush::owner_key`): a customer's test and live ledgers share one.
pub fn ledger_shard(owner: &str) -> String {
    let customer = owner.strip_prefix("test:").unwrap_or(owner);
    format!(
        "ledger-{}",
        crate::flush::shard_for(customer, LEDGER_SHARDS)
    )
}

/// A native flush batch as the rating endpoint accepts it; its records are checked
/// one by one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeBatch {
    schema: String,
    batch_id: String,
    #[allow(dead_code)]
    sent_at: String,
    records: Vec<serde_json::Value>,
}

/// A record the rating endpoint refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Refused {
    pub id: String,
    #[serde(default)]
    pub reason: String,
}

/// The records a receiver's 2xx answer refused one by one (`{"refused": [{"id",
/// "reason"}]}`), none when it lists none; an error when the list cannot be read,
/// since acknowledging the batch could then lose exactly the records it refused.
pub fn refused_in(answer: &str) -> Result<Vec<Refused>, String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(answer) else {
        return Ok(Vec::new()); // a receiver that says nothing more
    };
    match value.get("refused") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(list) => serde_json::from_value::<Vec<Refused>>(list.clone())
            .map_err(|e| format!("unreadable `refused` list: {e}")),
    }
}

/// A batch as checked: its good records, and the bad ones refused one by one. Batches
/// mix customers, so one bad record never holds back the others.
#[derive(Debug, Default)]
pub struct CheckedBatch {
    pub batch_id: String,
    pub records: Vec<UsageRecord>,
    /// Each record's JSON text as it came (when the batch was read in one pass), in
    /// the order of `records`: handed on to its Ledger shard as it is.
    pub texts: Vec<Box<RawValue>>,
    pub refused: Vec<Refused>,
}

impl CheckedBatch {
    /// Its records by the Ledger shard that keeps them ([`ledger_shard`]), each
    /// shard's as the JSON array a `LedgerCall::Ingest` carries: the texts as they
    /// came when there are, so a flush batch is not written out again.
    pub fn by_shard(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let mut out: std::collections::BTreeMap<String, String> = Default::default();
        for (i, r) in self.records.iter().enumerate() {
            let list = out
                .entry(ledger_shard(&r.customer))
                .or_insert_with(|| "[".into());
            if list.len() > 1 {
                list.push(',');
            }
            match self.texts.get(i) {
                Some(text) => list.push_str(text.get()),
                None => list.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?),
            }
        }
        out.values_mut().for_each(|list| list.push(']'));
        Ok(out)
    }

    /// The batch's answer from what each Ledger shard answered: counts added up, and every
    /// refused record listed (those the check refused and those a Ledger refused, such
    /// as usage for a final period past its backdating window), so the sender keeps
    /// exactly those aside.
    pub fn answer(self, ledgers: &[serde_json::Value]) -> serde_json::Value {
        let (mut stored, mut duplicates) = (0, 0);
        let mut refused = self.refused;
        for counts in ledgers {
            stored += counts["stored"].as_u64().unwrap_or(0);
            duplicates += counts["duplicates"].as_u64().unwrap_or(0);
            let late = serde_json::from_value::<Vec<Refused>>(counts["refused"].clone());
            refused.extend(late.unwrap_or_default());
        }
        serde_json::json!({"batch_id": self.batch_id, "stored": stored,
            "duplicates": duplicates, "refused": refused})
    }
}

/// Parses a batch in any format edgemeter emits (native, CloudEvents, Lago) and checks
/// each record; the error says what is wrong with a batch that cannot be read at all.
/// Nothing is stored for a refused record.
pub fn parse_batch(body: &[u8]) -> Result<CheckedBatch, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    // Most batches are native with every record well-formed: read in one pass. Any
    // other batch is read again record by record, so each bad record gets its reason.
    if let Some(batch) = one_pass(text) {
        return Ok(batch);
    }
    let native = serde_json::from_str::<NativeBatch>(text).map_err(|e| {
        format!(
            "{e} (at {})",
            crate::json_path::path_at(text, e.line(), e.column())
        )
    });
    let (batch_id, parsed): (String, Vec<Parsed>) = match native {
        Ok(batch) if batch.schema != "edgemeter.usage.v1" => {
            return Err(format!(
                "$.schema: expected `edgemeter.usage.v1`, got `{}`",
                batch.schema
            ))
        }
        Ok(batch) => {
            let records = batch.records.into_iter().enumerate().map(|(i, value)| {
                let id = value["id"].as_str().unwrap_or_default().to_string();
                let record =
                    serde_json::from_value(value).map_err(|e| format!("$.records[{i}]: {e}"));
                (id, record)
            });
            (batch.batch_id, records.collect::<Vec<_>>())
        }
        Err(native_error) => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|_| native_error.clone())?;
            if !(value.is_array() || value.get("events").is_some()) {
                return Err(native_error);
            }
            let records = crate::flush::records_of(&value)?;
            if records.is_empty() {
                return Err("the batch has no events".into());
            }
            (
                String::new(),
                records.into_iter().map(|r| (r.id.clone(), Ok(r))).collect(),
            )
        }
    };
    Ok(checked(batch_id, parsed))
}

/// A native batch, its records' texts kept as they came.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    schema: String,
    batch_id: String,
    #[allow(dead_code)]
    sent_at: String,
    records: Vec<Box<RawValue>>,
}

/// A native batch whose records all parse, with their texts; `None` for any other.
fn one_pass(text: &str) -> Option<CheckedBatch> {
    let batch = serde_json::from_str::<RawBatch>(text).ok()?;
    if batch.schema != "edgemeter.usage.v1" {
        return None;
    }
    let mut out = CheckedBatch {
        batch_id: batch.batch_id,
        ..CheckedBatch::default()
    };
    for (i, raw) in batch.records.into_iter().enumerate() {
        let record = serde_json::from_str::<UsageRecord>(raw.get()).ok()?;
        let id = record.id.clone();
        match check_record(i, record) {
            Ok(r) => {
                out.records.push(r);
                out.texts.push(raw);
            }
            Err(reason) => out.refused.push(Refused { id, reason }),
        }
    }
    Some(out)
}

/// Parsed records checked one by one: the good ones taken, the others refused.
fn checked(batch_id: String, parsed: impl IntoIterator<Item = Parsed>) -> CheckedBatch {
    let mut checked = CheckedBatch {
        batch_id,
        ..CheckedBatch::default()
    };
    for (i, (id, record)) in parsed.into_iter().enumerate() {
        match record.and_then(|r| check_record(i, r)) {
            Ok(r) => checked.records.push(r),
            Err(reason) => checked.refused.push(Refused { id, reason }),
        }
    }
    checked
}

/// A record's id, and the record or why it could not be parsed.
type Parsed = (String, Result<UsageRecord, String>);

/// One record, checked; the error names the field.
fn check_record(i: usize, r: UsageRecord) -> Result<UsageRecord, String> {
    let at = |field: &str| format!("$.records[{i}].{field}");
    if !(r.id.starts_with("rec_") && r.id.len() == 36) {
        return Err(format!("{}: not a record id", at("id")));
    }
    if !valid_customer_id(&r.customer) {
        return Err(format!("{}: not a customer id", at("customer")));
    }
    if r.period_end_ms <= r.period_start_ms {
        return Err(format!(
            "{}: the period ends before it starts",
            at("period_end_ms")
        ));
    }
    if r.seq_from > r.seq_to.saturating_add(1) {
        return Err(format!(
            "{}: the sequence range is reversed",
            at("seq_from")
        ));
    }
    Ok(r)
}

/// The delta a record adds to its (period, meter, model) total.
pub fn tally_of(r: &UsageRecord) -> Tally {
    crate::flush::snapshot::delta_of(r)
}

/// The rating input for one customer's period on one plan: totals per model (all
/// meters of a model together), mapped to billable meters by the engine's rules.
pub fn rating_input(
    plan: &str,
    period: Period,
    totals: &[(String, String, Tally)],
    as_of_ms: i64,
) -> RatingInput {
    let usage = usage_totals(totals.iter().map(|(_, model, t)| (model.as_str(), t)));
    RatingInput::single(plan, period, usage, as_of_ms)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod demo_book {
    #[test]
    fn the_demo_price_book_is_valid() {
        crate::rating::PriceBook::parse(include_str!("../../price_book.json")).unwrap();
    }
}
