//! Tests of the messages: replays kept for retries, calls that survive the trip.
use super::*;

#[test]
fn an_answer_is_kept_for_retries_only_with_a_key_as_text_within_the_limit() {
    let kept = Replay::keep(true, 201, "application/json", b"{}").unwrap();
    assert_eq!((kept.status, kept.body.as_str()), (201, "{}"));
    assert!(Replay::keep(false, 200, "application/json", b"{}").is_none());
    assert!(Replay::keep(true, 200, "application/octet-stream", &[0xff, 0xfe]).is_none());
    let large = vec![b'a'; crate::stream_meter::REPLAY_LIMIT + 1];
    assert!(Replay::keep(true, 200, "text/plain", &large).is_none());
    let at_limit = vec![b'a'; crate::stream_meter::REPLAY_LIMIT];
    assert!(Replay::keep(true, 200, "text/plain", &at_limit).is_some());
    let h = kept.headers();
    assert!(h.contains(&("idempotent-replayed".into(), "true".into())));
    assert!(h.contains(&("x-edgemeter-cost".into(), "0".into())));
}

#[test]
fn every_call_to_the_counter_survives_the_trip() {
    let calls = [
        CounterCall::Push,
        CounterCall::Reconcile(5),
        CounterCall::Usage(None),
        CounterCall::RevokeKey("key_1".into()),
    ];
    for call in calls {
        let text = serde_json::to_string(&call).unwrap();
        let back: CounterCall = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
    let unknown = serde_json::from_str::<CounterCall>(r#"{"call":"drop_all"}"#);
    assert!(unknown.is_err(), "an unknown call is refused, not guessed");
}

#[test]
fn a_push_with_any_test_record_is_never_live() {
    let live = crate::fixtures::record("c", "gpt-4o-mini", (1, 1), 1);
    let test = crate::flush::UsageRecord {
        livemode: false,
        ..live.clone()
    };
    assert!(ShardPush::of("c", std::slice::from_ref(&live)).livemode);
    assert!(!ShardPush::of("c", &[live, test]).livemode);
}
