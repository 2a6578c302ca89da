//! Tests of the delivery rules: answers, verdicts, requeues and back-off.
use super::*;
use crate::flush::tests::record;

fn refused(id: &str, reason: &str) -> Refused {
    Refused {
        id: id.into(),
        reason: reason.into(),
    }
}

#[test]
fn an_answer_ends_a_delivery_by_its_status() {
    assert_eq!(outcome_of(200, "{}"), Outcome::Delivered(vec![]));
    assert_eq!(outcome_of(204, ""), Outcome::Delivered(vec![]));
    for retry in [408, 429, 500, 503] {
        assert!(
            matches!(outcome_of(retry, "busy"), Outcome::Retry(_)),
            "{retry}"
        );
    }
    for rejected in [400, 401, 404, 422] {
        let o = outcome_of(rejected, "no");
        assert!(
            matches!(o, Outcome::Rejected(s, _) if s == rejected),
            "{rejected}"
        );
    }
    let listed = outcome_of(200, r#"{"refused":[{"id":"a","reason":"bad"}]}"#);
    assert_eq!(listed, Outcome::Delivered(vec![refused("a", "bad")]));
    // A refusal list nobody can read: nothing may be acknowledged.
    let unreadable = outcome_of(200, r#"{"refused":"all of them"}"#);
    assert!(matches!(unreadable, Outcome::Rejected(200, _)));
    let long = "x".repeat(1_000);
    let Outcome::Rejected(_, detail) = outcome_of(400, &long) else {
        panic!("not rejected");
    };
    assert!(detail.len() < 250, "the detail is cut short");
}

#[test]
fn a_delivered_batch_acknowledges_all_but_what_was_refused() {
    let (a, b) = (record("c", (1, 1), 1), record("c", (2, 2), 2));
    let batch = Batch::new(vec![a.clone(), b.clone()]);
    let o = Outcome::Delivered(vec![refused(&b.id, "no plan"), refused("stranger", "x")]);
    let v = verdict(&batch, o);
    assert_eq!(v.acknowledged, vec![a.id.clone()]);
    assert_eq!(v.refused, vec![(b, "no plan".to_string())]);
    assert_eq!((v.aside, v.stop), (None, None));
}

#[test]
fn a_rejected_batch_is_kept_aside_whole_and_a_retry_stops_the_run() {
    let batch = Batch::new(vec![record("c", (1, 1), 1)]);
    let aside = verdict(&batch, Outcome::Rejected(400, "bad".into()));
    assert!(aside.acknowledged.is_empty() && aside.aside.as_deref() == Some("bad"));
    let stop = verdict(&batch, Outcome::Retry("down".into()));
    assert!(stop.acknowledged.is_empty() && stop.aside.is_none());
    assert_eq!(stop.stop.as_deref(), Some("down"));
}

#[test]
fn a_requeued_letter_is_delivered_shrunk_or_kept() {
    let ids = vec!["a".to_string(), "b".to_string()];
    let all = requeued(&ids, Outcome::Delivered(vec![refused("z", "not ours")]));
    assert_eq!(
        all,
        Requeued::Delivered {
            acknowledged: ids.clone()
        }
    );
    let part = requeued(
        &ids,
        Outcome::Delivered(vec![refused("b", "still no plan")]),
    );
    assert_eq!(
        part,
        Requeued::Shrunk {
            acknowledged: vec!["a".into()],
            kept: vec!["b".into()],
            why: "still no plan".into(),
        }
    );
    let failed = requeued(&ids, Outcome::Retry("down".into()));
    assert_eq!(failed, Requeued::Failed("down".into()));
}

#[test]
fn failed_runs_back_off_doubling_and_a_success_clears_it() {
    let mut s = ShardStats::default();
    assert!(!s.backing_off(0));
    s.failed(1_000, 60_000, "down".into());
    assert_eq!(s.retry_at_ms, 61_000);
    assert!(s.backing_off(60_999) && !s.backing_off(61_000));
    s.failed(61_000, 60_000, "down".into());
    assert_eq!((s.failures, s.retry_at_ms), (2, 181_000));
    assert_eq!(s.last_error.as_deref(), Some("down"));
    s.succeeded();
    assert!(!s.backing_off(61_001) && s.failures == 0);
    assert_eq!(backoff_base_ms(Some("500")), 500);
    assert_eq!(backoff_base_ms(Some("soon")), BACKOFF_BASE_MS);
    assert_eq!(backoff_base_ms(None), BACKOFF_BASE_MS);
}

#[test]
fn batches_are_at_least_one_record_and_fit_the_format() {
    use crate::flush::{Format, DEFAULT_BATCH_RECORDS};
    assert_eq!(
        batch_records(None, Format::Native),
        DEFAULT_BATCH_RECORDS.min(Format::Native.max_batch())
    );
    assert_eq!(batch_records(Some("0"), Format::Native), 1);
    assert_eq!(batch_records(Some("7"), Format::Native), 7);
    let lago = Format::Lago.max_batch();
    assert_eq!(batch_records(Some("1000000"), Format::Lago), lago);
    assert_eq!(timeout_ms(None), TIMEOUT_MS);
    assert_eq!(timeout_ms(Some("250")), 250);
}

#[test]
fn the_fleet_sums_every_shard_or_says_it_cannot() {
    let shard = |pending: u64, error: Option<(&str, i64)>| {
        let mut s = serde_json::to_value(ShardStats {
            pending_customers: 1,
            pending_records: pending,
            last_run_ms: Some(pending as i64),
            ..ShardStats::default()
        })
        .unwrap();
        if let Some((e, at)) = error {
            s["last_error"] = e.into();
            s["last_error_ms"] = at.into();
        }
        s
    };
    let all = [shard(3, Some(("old", 1))), shard(4, Some(("new", 2)))];
    let fleet = fleet_stats(&all);
    assert_eq!(fleet["pending_records"], 7);
    assert_eq!(fleet["last_run_ms"], 4);
    assert_eq!(fleet["last_error"], "new");
    assert_eq!(fleet["shards_unreachable"], 0);
    let one_down = [shard(3, None), serde_json::json!({"error": "unavailable"})];
    let fleet = fleet_stats(&one_down);
    assert_eq!(fleet["shards_unreachable"], 1);
    assert!(fleet["pending_records"].is_null(), "never silently low");
}

#[test]
fn the_builtin_endpoint_retries_its_own_failures_only() {
    assert_eq!(
        internal_outcome(Ok("{}".into())),
        Outcome::Delivered(vec![])
    );
    assert_eq!(
        internal_outcome(Err((503, "busy".into()))),
        Outcome::Retry("busy".into())
    );
    let refused = internal_outcome(Err((401, "bad signature".into())));
    assert_eq!(refused, Outcome::Rejected(401, "bad signature".into()));
}

#[test]
fn lago_never_gets_a_customer_without_a_subscription() {
    let mut subscriptions = crate::flush::Subscriptions::new();
    subscriptions.insert("a".into(), "sub-a".into());
    let waiting = vec![
        ("a".to_string(), vec![record("a", (1, 1), 1)]),
        ("b".to_string(), vec![record("b", (1, 1), 1)]),
        ("empty".to_string(), vec![]),
    ];
    let (mapped, unmapped) = split_unmapped(waiting, &subscriptions);
    let names = |w: &crate::flush::Waiting| w.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>();
    assert_eq!(names(&mapped), ["a"]);
    assert_eq!(names(&unmapped), ["b", "empty"]);
}
