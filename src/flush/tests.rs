//! Tests of `flush`: ids, shards, batches, packing, backoff, signatures, modes.
use super::*;

pub(crate) fn record(customer: &str, seq: (u64, u64), tokens: u64) -> UsageRecord {
    let id = record_id(
        customer,
        1_000,
        "chat.completions",
        "gpt-4o-mini",
        seq,
        false,
    );
    UsageRecord {
        id,
        customer: customer.into(),
        period_start_ms: 1_000,
        period_end_ms: 2_000,
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        seq_from: seq.0,
        seq_to: seq.1,
        requests: 1,
        input_tokens: tokens,
        plan: "open".into(),
        recorded_at_ms: 1_500,
        ..UsageRecord::default()
    }
}

#[test]
fn ids_are_deterministic_and_distinct() {
    let a = record_id("c", 1, "m", "x", (1, 5), false);
    assert_eq!(a, record_id("c", 1, "m", "x", (1, 5), false));
    assert_eq!(a.len(), 36);
    for other in [
        record_id("d", 1, "m", "x", (1, 5), false),
        record_id("c", 2, "m", "x", (1, 5), false),
        record_id("c", 1, "m", "x", (1, 6), false),
        record_id("c", 1, "m", "x", (1, 5), true),
    ] {
        assert_ne!(a, other);
    }
}

#[test]
fn test_usage_reaches_an_external_receiver_only_when_asked() {
    let live = record("c", (1, 5), 10);
    let test = UsageRecord {
        livemode: false,
        ..live.clone()
    };
    let waiting = || {
        vec![
            (owner_key("c", true), vec![live.clone()]),
            (owner_key("c", false), vec![test.clone()]),
        ]
    };
    let (out, home) = split_test_usage(waiting(), false, false);
    assert_eq!(out, vec![("c".to_string(), vec![live.clone()])]);
    assert_eq!(home, vec![("test:c".to_string(), vec![test.clone()])]);
    for (internal, export) in [(true, false), (false, true)] {
        let (out, home) = split_test_usage(waiting(), internal, export);
        assert_eq!((out.len(), home.len()), (2, 0));
    }
}

#[test]
fn a_dead_letter_of_test_usage_goes_back_to_the_builtin_ledger() {
    assert!(requeue_home(&["test:a", "test:b"], false, false));
    assert!(
        !requeue_home(&["test:a", "b"], false, false),
        "live usage in it"
    );
    assert!(
        !requeue_home(&["test:a"], true, false),
        "the receiver is the ledger"
    );
    assert!(
        !requeue_home(&["test:a"], false, true),
        "test usage is exported"
    );
    assert!(!requeue_home(&[], false, false));
}

#[test]
fn test_and_live_records_of_the_same_usage_never_share_an_id() {
    let live = record("c", (1, 5), 10);
    assert_eq!(live.content_id(), live.id);
    let test = UsageRecord {
        livemode: false,
        ..live.clone()
    };
    assert_ne!(test.content_id(), live.content_id());
    assert_eq!(test.content_id().len(), 36);
    assert!(test.content_id().starts_with("rec_"));
}

#[test]
fn customers_spread_over_every_shard() {
    let mut seen = [0u32; 8];
    for i in 0..800 {
        seen[shard_for(&format!("c{i}"), 8) as usize] += 1;
    }
    assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    assert_eq!(shard_for("acme", 8), shard_for("acme", 8));
    assert_eq!(shard_for("acme", 0), 0);
}

#[test]
fn batch_id_depends_on_the_set_of_records_not_their_order() {
    let (a, b) = (record("a", (1, 2), 5), record("b", (1, 1), 7));
    let one = Batch::new(vec![a.clone(), b.clone()]);
    let two = Batch::new(vec![b, a.clone()]);
    assert_eq!(one, two);
    assert_ne!(one.batch_id, Batch::new(vec![a]).batch_id);
}

#[test]
fn batches_hold_at_most_the_limit() {
    let records: Vec<_> = (0..1201)
        .map(|i| record(&format!("c{i}"), (1, 1), i))
        .collect();
    let sizes: Vec<usize> = batches(records, 500)
        .iter()
        .map(|b| b.records.len())
        .collect();
    assert_eq!(sizes, [500, 500, 201]);
    assert!(batches(vec![], 500).is_empty());
}

#[test]
fn packing_keeps_customers_whole_and_batches_bounded() {
    let recs = |c: &str, n: u64| {
        (
            c.to_string(),
            (0..n).map(|i| record(c, (i, i), 1)).collect::<Vec<_>>(),
        )
    };
    let packed = pack(
        vec![
            recs("a", 3),
            recs("b", 3),
            recs("c", 0),
            recs("d", 9),
            recs("e", 1),
        ],
        4,
    );
    let shape: Vec<(usize, Vec<String>)> = packed
        .iter()
        .map(|(b, c)| (b.records.len(), c.clone()))
        .collect();
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // in order: a (3); b would make 6 > 4, so a goes alone; d (9 > 4) is split
    // into 4 + 4 + 1 on its own; e starts a new batch; c has nothing to send
    assert_eq!(
        shape,
        vec![
            (3, names(&["a"])),
            (3, names(&["b"])),
            (4, names(&["d"])),
            (4, names(&["d"])),
            (1, names(&["d"])),
            (1, names(&["e"]))
        ]
    );
    let small = pack(vec![recs("a", 1), recs("b", 2)], 4);
    assert_eq!((small.len(), small[0].1.clone()), (1, names(&["a", "b"])));
}

#[test]
fn backoff_doubles_up_to_an_hour() {
    assert_eq!(backoff_ms(1, 60_000), 60_000);
    assert_eq!(backoff_ms(3, 60_000), 240_000);
    assert_eq!(backoff_ms(30, 60_000), 3_600_000);
    assert_eq!(backoff_ms(5, 0), 0);
}

#[test]
fn signature_matches_an_independent_hmac() {
    // python3: hmac.new(b"whsec_test", b'1700000000.{"batch_id":"b1"}', sha256).hexdigest()
    let sig = signature("whsec_test", 1_700_000_000, br#"{"batch_id":"b1"}"#);
    assert_eq!(
        sig,
        "t=1700000000,v1=5254551be49a56203ae79807571a56ded8a2cc7aa9472912db06fbea239b7b37"
    );
    assert!(verify(
        "whsec_test",
        &sig,
        br#"{"batch_id":"b1"}"#,
        1_700_000_100,
        300
    ));
    assert!(!verify(
        "whsec_test",
        &sig,
        br#"{"batch_id":"b2"}"#,
        1_700_000_100,
        300
    ));
    assert!(!verify(
        "other",
        &sig,
        br#"{"batch_id":"b1"}"#,
        1_700_000_100,
        300
    ));
    assert!(!verify(
        "whsec_test",
        &sig,
        br#"{"batch_id":"b1"}"#,
        1_700_001_000,
        300
    ));
    assert!(!verify("whsec_test", "v1=abc", b"", 0, 300));
}

#[test]
fn test_usage_routes_from_the_settings() {
    let route = TestUsageRoute::from_settings;
    assert!(route(Some("internal"), None).receiver_is_internal);
    assert!(!route(Some("https://rating.example"), None).receiver_is_internal);
    assert!(route(None, Some("true")).export_test);
    assert!(!route(None, Some("yes")).export_test, "only `true` exports");
    assert_eq!(route(None, None), route(Some("intern"), Some("")));
}

#[test]
fn signature_parts_are_the_timestamp_and_mac_of_a_fresh_header() {
    let header = "t=1700000000, v1=ab12,v0=zz";
    assert_eq!(
        signature_parts(header, 1_700_000_100, 300),
        Some((1_700_000_000, "ab12"))
    );
    assert_eq!(signature_parts(header, 1_700_000_301, 300), None, "stale");
    assert_eq!(signature_parts("t=1700000000", 1_700_000_000, 300), None);
    assert_eq!(signature_parts("v1=ab12", 1_700_000_000, 300), None);
    // The check before the body is read judges the same timestamp as the MAC check:
    // a fresh `t` put in front of a replayed header's stale one passes neither.
    let replayed = "t=1700000300,t=1700000000,v1=ab12";
    assert_eq!(signature_parts(replayed, 1_700_000_301, 300), None);
    assert!(!signature_fresh(replayed, 1_700_000_301, 300));
    assert!(signature_fresh(header, 1_700_000_100, 300));
    assert!(
        !signature_fresh("t=1700000000", 1_700_000_000, 300),
        "no MAC"
    );
    assert!(mac_matches("ab12", "ab12"));
    assert!(!mac_matches("ab12", "AB12"));
    assert!(!mac_matches("ab12", "ab1"));
}
