//! Tests of `ledger`: batch checks, refusals and rating input.
use super::*;
use crate::flush::{record_id, render, Batch, Format};
use crate::rating::BillableMeter;

fn record(customer: &str, requests: u64) -> UsageRecord {
    UsageRecord {
        id: record_id(
            customer,
            0,
            "chat.completions",
            "gpt-4o-mini",
            (1, 2),
            false,
        ),
        customer: customer.into(),
        period_start_ms: 0,
        period_end_ms: 100,
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        seq_from: 1,
        seq_to: 2,
        requests,
        input_tokens: 30,
        output_tokens: 7,
        cached_tokens: 10,
        plan: "open".into(),
        recorded_at_ms: 50,
        ..UsageRecord::default()
    }
}

#[test]
fn a_rendered_native_batch_parses_back() {
    let batch = Batch::new(vec![record("acme", 2), record("bolt", 1)]);
    let (_, body) = render(Format::Native, &batch, 1_000);
    let parsed = parse_batch(&body).unwrap();
    assert_eq!((parsed.batch_id, parsed.records.len()), (batch.batch_id, 2));
}

#[test]
fn a_bad_record_is_refused_alone_and_a_bad_batch_whole() {
    let batch = Batch::new(vec![record("acme", 2), record("bolt", 1)]);
    let (_, body) = render(Format::Native, &batch, 1_000);
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // One bad record: the other is kept, the bad one refused by id, saying where.
    let refused = |patch: &dyn Fn(&mut serde_json::Value)| {
        let mut w = v.clone();
        patch(&mut w);
        let checked = parse_batch(w.to_string().as_bytes()).unwrap();
        assert_eq!(checked.records.len(), 1, "the good record is kept");
        assert_eq!(checked.refused.len(), 1);
        let r = checked.refused[0].clone();
        assert_eq!(r.id, w["records"][0]["id"].as_str().unwrap_or_default());
        r.reason
    };
    let customer = refused(&|w| w["records"][0]["customer"] = "a b".into());
    assert!(customer.contains("$.records[0].customer"), "{customer}");
    assert!(refused(&|w| w["records"][0]["period_end_ms"] = 0.into()).contains("period_end_ms"));
    assert!(refused(&|w| w["records"][0]["input_tokens"] = (-1).into()).contains("$.records[0]"));
    // A batch that cannot be read at all is refused whole.
    let bad = |patch: &dyn Fn(&mut serde_json::Value)| {
        let mut w = v.clone();
        patch(&mut w);
        parse_batch(w.to_string().as_bytes()).unwrap_err()
    };
    assert!(bad(&|w| w["schema"] = "other".into()).contains("$.schema"));
    v["extra"] = 1.into();
    assert!(parse_batch(v.to_string().as_bytes())
        .unwrap_err()
        .contains("extra"));
    assert!(parse_batch(b"[]").is_err());
}

#[test]
fn cloudevents_and_lago_batches_parse_to_the_same_records() {
    let batch = Batch::new(vec![record("acme", 2), record("bolt", 3)]);
    let (_, native) = render(Format::Native, &batch, 1_000);
    let mut want = parse_batch(&native).unwrap().records;
    want.sort_by(|a, b| a.id.cmp(&b.id));
    for format in [Format::CloudEvents, Format::Lago] {
        let (_, body) = render(format, &batch, 1_000);
        let mut got = parse_batch(&body).unwrap().records;
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got, want, "{format:?}");
    }
    // the same checks apply: a bad customer id in a CloudEvents batch is refused
    let (_, body) = render(Format::CloudEvents, &batch, 1_000);
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v[0]["data"]["customer"] = "a b".into();
    let checked = parse_batch(v.to_string().as_bytes()).unwrap();
    assert!(checked.refused[0].reason.contains("customer"));
    assert_eq!(checked.records.len(), 1);
}

#[test]
fn a_receivers_refusals_are_read_strictly() {
    assert_eq!(refused_in("").unwrap(), vec![]);
    assert_eq!(refused_in(r#"{"ok": true}"#).unwrap(), vec![]);
    let one = refused_in(r#"{"refused": [{"id": "rec_1"}]}"#).unwrap();
    assert_eq!((one[0].id.as_str(), one[0].reason.as_str()), ("rec_1", ""));
    // a list it cannot read never passes for "nothing refused"
    assert!(refused_in(r#"{"refused": ["rec_1"]}"#).is_err());
    assert!(refused_in(r#"{"refused": {"id": "rec_1"}}"#).is_err());
}

#[test]
fn totals_of_one_model_are_rated_together() {
    let t = |requests, input, cached, output| Tally {
        requests,
        input,
        cached,
        output,
        ..Tally::default()
    };
    let totals = vec![
        (
            "chat.completions".to_string(),
            "m".to_string(),
            t(2, 30, 10, 7),
        ),
        ("responses".to_string(), "m".to_string(), t(1, 5, 0, 3)),
    ];
    let input = rating_input(
        "pro",
        Period {
            start_ms: 0,
            end_ms: 10,
        },
        &totals,
        5,
    );
    let units = |meter| {
        input.segments[0]
            .usage
            .iter()
            .find(|u| u.meter == meter)
            .map(|u| u.units)
    };
    // input 35 of which 10 cached -> 25 fresh; output 10; 3 requests
    assert_eq!(units(BillableMeter::InputTokens), Some(25));
    assert_eq!(units(BillableMeter::CachedInputTokens), Some(10));
    assert_eq!(units(BillableMeter::OutputTokens), Some(10));
    assert_eq!(units(BillableMeter::Requests), Some(3));
}

#[test]
fn a_batch_goes_to_each_owners_ledger_and_its_answer_adds_them_up() {
    let live = crate::fixtures::record("a", "gpt-4o-mini", (1, 1), 1);
    let test = UsageRecord {
        livemode: false,
        ..crate::fixtures::record("a", "gpt-4o-mini", (2, 2), 1)
    };
    let other = crate::fixtures::record("b", "gpt-4o-mini", (1, 1), 1);
    let batch = CheckedBatch {
        texts: Vec::new(),
        batch_id: "b1".into(),
        records: vec![live.clone(), test.clone(), other.clone()],
        refused: vec![Refused {
            id: "bad".into(),
            reason: "unreadable".into(),
        }],
    };
    let shards: std::collections::BTreeMap<String, Vec<UsageRecord>> = batch
        .by_shard()
        .unwrap()
        .into_iter()
        .map(|(shard, text)| (shard, serde_json::from_str(&text).unwrap()))
        .collect();
    // a customer's test and live records go to one shard
    assert_eq!(ledger_shard("test:a"), ledger_shard("a"));
    assert_eq!(shards[&ledger_shard("a")][..2], [live, test]);
    let total: usize = shards.values().map(Vec::len).sum();
    assert_eq!(total, 3);
    assert!(shards[&ledger_shard("b")].contains(&other));
    let answers = [
        serde_json::json!({"stored": 2, "duplicates": 0, "refused": []}),
        serde_json::json!({"stored": 0, "duplicates": 1,
            "refused": [{"id": "late", "reason": "past its backdating window"}]}),
    ];
    let answer = batch.answer(&answers);
    assert_eq!(
        (answer["stored"].as_u64(), answer["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    let refused: Vec<&str> = answer["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["bad", "late"]);
}

#[test]
fn a_native_batch_goes_to_its_shards_as_it_came_but_for_refused_records() {
    let good = crate::fixtures::record("a", "gpt-4o-mini", (1, 1), 1);
    let mut bad = crate::fixtures::record("b", "gpt-4o-mini", (2, 2), 1);
    bad.period_end_ms = bad.period_start_ms; // refused: ends before it starts
    let body = serde_json::json!({"schema": "edgemeter.usage.v1", "batch_id": "b",
        "sent_at": "2026-01-01T00:00:00Z", "records": [good, bad]});
    // an extra space inside the good record's text shows it is handed on as it came
    let text = body
        .to_string()
        .replacen("{\"audio_tokens\"", "{ \"audio_tokens\"", 1);
    let batch = parse_batch(text.as_bytes()).unwrap();
    assert_eq!(batch.records, vec![good.clone()]);
    assert_eq!(batch.refused.len(), 1);
    let shards = batch.by_shard().unwrap();
    assert_eq!(shards.len(), 1);
    let list = &shards[&ledger_shard("a")];
    assert!(list.starts_with("[{ \"audio_tokens\""), "{list}");
    let back: Vec<UsageRecord> = serde_json::from_str(list).unwrap();
    assert_eq!(back, vec![good]);
}
