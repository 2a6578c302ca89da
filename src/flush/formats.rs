//! The wire formats a batch can be delivered in: edgemeter's own JSON, a CloudEvents 1.0
//! batch (as OpenMeter ingests), and Lago's batch events.

use super::{Batch, UsageRecord};
use crate::period::iso8601;
use serde_json::{json, Value};

/// Which receiver schema `RATING_FORMAT` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Native,
    CloudEvents,
    Lago,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "" | "native" => Some(Format::Native),
            "cloudevents" => Some(Format::CloudEvents),
            "lago" => Some(Format::Lago),
            _ => None,
        }
    }

    /// Records per request this receiver accepts at most.
    pub fn max_batch(self) -> usize {
        match self {
            Format::Lago => 100,
            _ => usize::MAX,
        }
    }
}

/// The usage numbers of a record, as every format carries them: all of the record
/// but its id, so any format parses back into the very same record
/// ([`records_of`]).
fn measures(r: &UsageRecord) -> Value {
    json!({
        "customer": r.customer, "plan": r.plan, "meter": r.meter, "model": r.model,
        "period_start_ms": r.period_start_ms, "period_end_ms": r.period_end_ms,
        "recorded_at_ms": r.recorded_at_ms,
        "period_start": iso8601(r.period_start_ms), "period_end": iso8601(r.period_end_ms),
        "requests": r.requests, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
        "cached_tokens": r.cached_tokens, "reasoning_tokens": r.reasoning_tokens,
        "images": r.images, "duration_ms": super::snapshot::delta_of(r).duration_ms,
        "estimated": r.estimated,
        "cache_write_tokens": r.cache_write_tokens, "cache_write_1h_tokens": r.cache_write_1h_tokens,
        "audio_tokens": r.audio_tokens, "schema": r.schema, "livemode": r.livemode,
        "estimated_input_tokens": r.estimated_input_tokens,
        "estimated_output_tokens": r.estimated_output_tokens,
        "final": r.is_final, "seq_from": r.seq_from, "seq_to": r.seq_to,
    })
}

/// The path each receiver ingests at, added to `RATING_URL` when it names only a host:
/// Lago's batch endpoint, OpenMeter's CloudEvents endpoint.
pub fn endpoint(format: Format, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let has_path = rest.trim_end_matches('/').contains('/');
    let path = match format {
        Format::Lago => "/api/v1/events/batch",
        Format::CloudEvents => "/api/v1/events",
        Format::Native => "",
    };
    match has_path {
        true => url.to_string(),
        false => format!("{}{path}", url.trim_end_matches('/')),
    }
}

/// Lago's `external_subscription_id` of each customer (the catalog's `subscriptions`).
pub type Subscriptions = std::collections::BTreeMap<String, String>;

/// Content type and body of a batch in `format`. A Lago event names the customer's
/// subscription; records of customers without one are never rendered for Lago (the
/// shard sets them aside first).
pub fn render(format: Format, batch: &Batch, now_ms: i64) -> (&'static str, Vec<u8>) {
    render_for(format, batch, now_ms, &Subscriptions::new())
}

/// [`render`], with the subscriptions Lago events name.
pub fn render_for(
    format: Format,
    batch: &Batch,
    now_ms: i64,
    subscriptions: &Subscriptions,
) -> (&'static str, Vec<u8>) {
    match format {
        Format::Native => {
            let body = json!({"schema": "edgemeter.usage.v1", "batch_id": batch.batch_id,
                "sent_at": iso8601(now_ms), "records": batch.records});
            ("application/json", body.to_string().into_bytes())
        }
        Format::CloudEvents => {
            let events: Vec<Value> = batch
                .records
                .iter()
                .map(|r| {
                    json!({"specversion": "1.0", "id": r.id, "source": "edgemeter",
                        "type": "edgemeter.usage", "subject": r.customer,
                        "time": iso8601(r.recorded_at_ms), "datacontenttype": "application/json",
                        "data": measures(r)})
                })
                .collect();
            (
                "application/cloudevents-batch+json",
                Value::Array(events).to_string().into_bytes(),
            )
        }
        Format::Lago => {
            let events: Vec<Value> = batch
                .records
                .iter()
                .map(|r| {
                    let subscription = subscriptions.get(&r.customer).unwrap_or(&r.customer);
                    json!({"transaction_id": r.id, "external_subscription_id": subscription,
                        "code": r.meter.replace('.', "_"), "timestamp": r.recorded_at_ms / 1000,
                        "properties": measures(r)})
                })
                .collect();
            (
                "application/json",
                json!({"events": events}).to_string().into_bytes(),
            )
        }
    }
}

/// The records of a batch in any format edgemeter emits: a native batch's records, a
/// CloudEvents batch's `data`, or a Lago batch's `properties`, each with its event id.
pub fn records_of(body: &Value) -> Result<Vec<UsageRecord>, String> {
    let (events, id, fields) = match body {
        Value::Array(events) => (events, "id", "data"),
        Value::Object(o) if o.contains_key("events") => match &o["events"] {
            Value::Array(events) => (events, "transaction_id", "properties"),
            _ => return Err("$.events: must be an array".into()),
        },
        _ => return Err("neither a CloudEvents nor a Lago batch".into()),
    };
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut record = e[fields].clone();
            let Some(obj) = record.as_object_mut() else {
                return Err(format!("$[{i}].{fields}: must be an object"));
            };
            obj.insert("id".into(), e[id].clone());
            serde_json::from_value(record).map_err(|err| format!("$[{i}]: {err}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::record;
    use super::*;

    fn parsed(format: Format) -> (String, Value) {
        let batch = Batch::new(vec![record("acme", (1, 3), 42), record("bolt", (4, 4), 7)]);
        let (ct, body) = render(format, &batch, 1_764_547_200_000);
        (ct.to_string(), serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn native_carries_the_batch_id_and_records() {
        let (ct, v) = parsed(Format::Native);
        assert_eq!(ct, "application/json");
        assert!(v["batch_id"].as_str().unwrap().starts_with("bat_"));
        assert_eq!(v["records"].as_array().unwrap().len(), 2);
        let acme = v["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer"] == "acme")
            .unwrap();
        assert_eq!(
            (acme["input_tokens"].as_u64(), acme["final"].as_bool()),
            (Some(42), Some(false))
        );
    }

    #[test]
    fn cloudevents_batch_has_the_required_attributes() {
        let (ct, v) = parsed(Format::CloudEvents);
        assert_eq!(ct, "application/cloudevents-batch+json");
        let e = v
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == "acme")
            .unwrap();
        for attr in ["specversion", "id", "source", "type"] {
            assert!(e[attr].is_string(), "{attr} missing: {e}");
        }
        assert_eq!(e["specversion"], "1.0");
        assert!(e["id"].as_str().unwrap().starts_with("rec_"));
        assert_eq!(e["subject"], "acme");
        assert_eq!(e["time"], "1970-01-01T00:00:01Z");
    }

    #[test]
    fn lago_uses_the_record_id_as_transaction_id() {
        let (_, v) = parsed(Format::Lago);
        let e = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["external_subscription_id"] == "acme")
            .unwrap();
        assert!(e["transaction_id"].as_str().unwrap().starts_with("rec_"));
        assert_eq!(
            (e["code"].as_str(), e["external_subscription_id"].as_str()),
            (Some("chat_completions"), Some("acme"))
        );
        assert_eq!(e["properties"]["input_tokens"], 42);
        assert_eq!(Format::Lago.max_batch(), 100);
        assert_eq!(Format::parse("xml"), None);
    }
}

#[cfg(test)]
mod schema_two {
    use super::super::tests::record;
    use super::*;

    /// Every format carries the schema-2 and schema-3 fields and names the schema.
    #[test]
    fn cache_writes_audio_mode_and_estimates_reach_every_format() {
        let mut r = record("acme", (1, 1), 42);
        (
            r.cache_write_tokens,
            r.cache_write_1h_tokens,
            r.audio_tokens,
        ) = (6, 4, 3);
        (
            r.livemode,
            r.estimated_input_tokens,
            r.estimated_output_tokens,
        ) = (false, 9, 5);
        let batch = Batch::new(vec![r]);
        for format in [Format::Native, Format::CloudEvents, Format::Lago] {
            let (_, body) = render(format, &batch, 0);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let fields = match format {
                Format::Native => v["records"][0].clone(),
                Format::CloudEvents => v[0]["data"].clone(),
                Format::Lago => v["events"][0]["properties"].clone(),
            };
            let got = [
                "cache_write_tokens",
                "cache_write_1h_tokens",
                "audio_tokens",
                "schema",
                "estimated_input_tokens",
                "estimated_output_tokens",
            ]
            .map(|f| fields[f].as_u64());
            let schema = Some(u64::from(crate::flush::RECORD_SCHEMA));
            assert_eq!(
                got,
                [Some(6), Some(4), Some(3), schema, Some(9), Some(5)],
                "{format:?}: {fields}"
            );
            assert_eq!(fields["livemode"], false, "{format:?}: {fields}");
        }
        // A record written before schema 2 still parses, as schema 1 with zeros.
        let mut old = serde_json::to_value(record("acme", (1, 1), 42)).unwrap();
        for f in [
            "cache_write_tokens",
            "cache_write_1h_tokens",
            "audio_tokens",
            "schema",
        ] {
            old.as_object_mut().unwrap().remove(f);
        }
        old.as_object_mut().unwrap().remove("livemode");
        let old: UsageRecord = serde_json::from_value(old).unwrap();
        assert_eq!((old.schema, old.cache_write_tokens), (1, 0));
        assert!(old.livemode, "a record from before schema 3 is live usage");
        // and its whole seconds become milliseconds of the same duration
        let mut secs = serde_json::to_value(record("acme", (1, 1), 42)).unwrap();
        secs.as_object_mut().unwrap().remove("duration_ms");
        secs["seconds"] = 3.into();
        let secs: UsageRecord = serde_json::from_value(secs).unwrap();
        assert_eq!(crate::flush::snapshot::delta_of(&secs).duration_ms, 3_000);
    }
}

#[cfg(test)]
mod round_trip {
    use super::super::tests::record;
    use super::*;

    #[test]
    fn every_format_parses_back_into_the_same_records() {
        let mut a = record("acme", (1, 3), 42);
        a.cache_write_tokens = 7;
        let mut test = record("bolt", (4, 4), 7);
        (test.livemode, test.estimated_output_tokens) = (false, 2);
        test.id = test.content_id();
        let batch = Batch::new(vec![a, test]);
        let subs = Subscriptions::from([("acme".to_string(), "sub_acme".to_string())]);
        for format in [Format::CloudEvents, Format::Lago] {
            let (_, body) = render_for(format, &batch, 0, &subs);
            let v: Value = serde_json::from_slice(&body).unwrap();
            let mut back = records_of(&v).unwrap();
            back.sort_by(|x, y| x.id.cmp(&y.id));
            let mut sent = batch.records.clone();
            sent.sort_by(|x, y| x.id.cmp(&y.id));
            assert_eq!(back, sent, "{format:?}");
        }
        let (_, lago) = render_for(Format::Lago, &batch, 0, &subs);
        let lago: Value = serde_json::from_slice(&lago).unwrap();
        let names: Vec<&str> = lago["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["external_subscription_id"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"sub_acme"), "{names:?}");
        assert!(records_of(&json!({"events": 3})).is_err());
    }

    #[test]
    fn a_bare_host_gets_the_receivers_ingest_path() {
        assert_eq!(
            endpoint(Format::Lago, "https://api.getlago.com"),
            "https://api.getlago.com/api/v1/events/batch"
        );
        assert_eq!(
            endpoint(Format::CloudEvents, "https://openmeter.cloud/"),
            "https://openmeter.cloud/api/v1/events"
        );
        assert_eq!(
            endpoint(Format::Lago, "http://127.0.0.1:9/custom"),
            "http://127.0.0.1:9/custom"
        );
        assert_eq!(
            endpoint(Format::Native, "https://rating.example"),
            "https://rating.example"
        );
    }
}
