//! Tests of a reservation's life: heartbeats, expiry at the bound, late settlements,
//! periods, and arithmetic at the edges of `u64`.
use super::*;
use crate::catalog::{Catalog, Plan};
use crate::counter_state::CounterState;
use crate::pricing::Pricing;
use crate::refusal::Refusal;
use crate::request::AdmitAsk;

const NOW: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a period start

fn catalog() -> Catalog {
    crate::fixtures::catalog()
}

fn ask(input: u64, cap: u64, choices: u64) -> AdmitAsk {
    AdmitAsk {
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        input_estimate: input / 2,
        input_reserve: input,
        output_cap: Some(cap),
        choices,
        ..AdmitAsk::default()
    }
}

fn admitted(s: &mut CounterState, a: &AdmitAsk, at: i64) -> Reservation {
    let c = catalog();
    s.admit(&Pricing::List(&c), &Plan::default(), a, at)
        .unwrap()
}

#[test]
fn a_heartbeat_keeps_a_long_stream_alive_and_its_real_usage_counts() {
    let mut s = CounterState::new(1, NOW);
    let r = admitted(&mut s, &ask(100, 50, 1), NOW);
    // A 20-minute stream beating every minute is never due.
    for minute in 1..=20 {
        let at = NOW + minute * HEARTBEAT_MS;
        assert!(s.due(at).is_empty(), "due at minute {minute}");
        assert!(s.extend(r.id, at).is_some());
    }
    let real = Usage {
        input: 90,
        output: 5_000,
        ..Usage::default()
    };
    let landing = s
        .settle(r.id, &real, false, NOW + 21 * HEARTBEAT_MS)
        .unwrap();
    let Landing::Current(_, tally) = landing else {
        panic!("{landing:?}")
    };
    assert_eq!(
        (tally.requests, tally.output, tally.estimated),
        (1, 5_000, 0)
    );
    assert!(
        s.extend(r.id, NOW + 22 * HEARTBEAT_MS).is_none(),
        "settled: gone"
    );
}

#[test]
fn an_expired_reservation_bills_its_whole_bound_and_never_zero() {
    let mut s = CounterState::new(1, NOW);
    let r = admitted(&mut s, &ask(100, 50, 4), NOW);
    assert!(s.due(NOW + RESERVATION_TTL_MS - 1).is_empty());
    assert_eq!(s.due(NOW + RESERVATION_TTL_MS), vec![r.id]);
    assert_eq!(s.next_deadline(), Some(NOW + RESERVATION_TTL_MS));
    let (landing, expired) = s.expire(r.id, NOW + RESERVATION_TTL_MS).unwrap();
    let Landing::Current(_, tally) = landing else {
        panic!("{landing:?}")
    };
    // input bound 100, output cap 50 times 4 choices
    assert_eq!((tally.input, tally.output, tally.estimated), (100, 200, 1));
    assert_eq!(expired.billed.tokens(), 300);
    assert!(s.reservations.is_empty() && s.next_deadline().is_none());
}

#[test]
fn a_late_settlement_replaces_the_estimate_within_its_period() {
    let mut s = CounterState::new(1, NOW);
    let r = admitted(&mut s, &ask(100, 50, 1), NOW);
    let other = admitted(&mut s, &ask(10, 10, 1), NOW);
    s.settle(
        other.id,
        &Usage {
            input: 3,
            output: 4,
            ..Usage::default()
        },
        false,
        NOW,
    );
    s.expire(r.id, NOW + RESERVATION_TTL_MS).unwrap();
    let real = Usage {
        input: 80,
        output: 20,
        reasoning: 5,
        ..Usage::default()
    };
    let late = s
        .settle(r.id, &real, false, NOW + RESERVATION_TTL_MS + 1)
        .unwrap();
    let Landing::Current(_, tally) = late else {
        panic!("{late:?}")
    };
    assert_eq!(tally.requests, 2);
    assert_eq!((tally.input, tally.output, tally.reasoning), (83, 24, 5));
    assert_eq!(tally.estimated, 0);
    // Once replaced, a repeat changes nothing.
    assert_eq!(
        s.settle(r.id, &real, false, NOW + RESERVATION_TTL_MS + 2),
        None
    );
}

#[test]
fn usage_lands_in_the_period_its_request_was_admitted_in() {
    let mut s = CounterState::new(1, NOW);
    let first = s.period;
    let r = admitted(&mut s, &ask(100, 50, 1), first.end_ms - 1_000);
    // The period ends while the request runs: the next one is not complete-able yet,
    // and the old one is held back from its final records.
    s.roll(first.end_ms + 10);
    assert_eq!(s.complete_before(), first.start_ms);
    let u = Usage {
        input: 90,
        output: 40,
        ..Usage::default()
    };
    let landing = s.settle(r.id, &u, false, first.end_ms + 20).unwrap();
    assert_eq!(
        landing,
        Landing::Past {
            period: first,
            key: r.key(),
            delta: Tally::one(&u, false),
        }
    );
    assert!(s.tallies.is_empty(), "nothing of it in the new period");
    assert_eq!(s.complete_before(), s.period.start_ms);
}

#[test]
fn an_estimate_of_a_period_that_ended_is_not_replaced() {
    let mut s = CounterState::new(1, NOW);
    let end = s.period.end_ms;
    let r = admitted(&mut s, &ask(100, 50, 1), end - RESERVATION_TTL_MS - 5);
    s.expire(r.id, s.period.end_ms - 1).unwrap();
    let after = s.period.end_ms + 1;
    assert_eq!(s.settle(r.id, &Usage::default(), false, after), None);
}

#[test]
fn a_cap_of_u64_max_never_wraps_a_counter() {
    let c = catalog();
    let hard = Plan {
        tokens_per_minute: Some(10_000),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    let err = s
        .admit(&Pricing::List(&c), &hard, &ask(10, u64::MAX, 1), NOW)
        .unwrap_err();
    assert!(
        matches!(err, Refusal::TokensPerMinute { needs, .. } if needs == u64::MAX),
        "{err:?}"
    );
    assert_eq!(s.window.tokens, 0);
    // Without a limit it is admitted, saturating; releasing it leaves nothing behind.
    let r = admitted(&mut s, &ask(u64::MAX, u64::MAX, 128), NOW);
    assert_eq!(r.tokens, u64::MAX);
    let again = admitted(&mut s, &ask(u64::MAX, 1, 1), NOW);
    assert_eq!(s.window.tokens, u64::MAX);
    s.release(r.id, NOW);
    s.release(again.id, NOW);
    assert_eq!(s.window.tokens, 0);
    let mut t = Tally {
        output: u64::MAX - 1,
        ..Tally::default()
    };
    t.add(
        &Usage {
            output: 5,
            ..Usage::default()
        },
        false,
    );
    assert_eq!(t.output, u64::MAX);
}

#[test]
fn heartbeats_cannot_hold_a_reservation_past_its_lifetime() {
    let mut s = CounterState::new(1, NOW);
    let r = admitted(&mut s, &ask(100, 50, 1), NOW);
    let mut at = NOW;
    while at < NOW + MAX_LIFETIME_MS {
        at += HEARTBEAT_MS;
        s.extend(r.id, at);
    }
    assert_eq!(s.next_deadline(), Some(NOW + MAX_LIFETIME_MS));
    assert_eq!(s.due(NOW + MAX_LIFETIME_MS), vec![r.id]);
}

#[test]
fn a_call_stamped_earlier_never_brings_an_old_period_or_minute_back() {
    let mut s = CounterState::new(1, NOW);
    let first = s.period;
    let r = admitted(&mut s, &ask(10, 10, 1), first.end_ms - 10);
    s.roll(first.end_ms + 61_000);
    let (period, minute) = (s.period, s.window.index);
    assert_ne!(period, first);
    // A settlement sent just before the period ended arrives after it rolled.
    let landing = s.settle(
        r.id,
        &Usage {
            input: 1,
            ..Usage::default()
        },
        false,
        first.end_ms - 5,
    );
    assert!(matches!(landing, Some(Landing::Past { .. })), "{landing:?}");
    assert_eq!((s.period, s.window.index), (period, minute));
    assert!(!s.roll(first.start_ms));
    assert_eq!(s.period, period);
}

#[test]
fn a_late_landing_adds_to_its_periods_stored_tally() {
    let key: MeterKey = ("chat.completions".into(), "gpt-4o-mini".into());
    let current = Period {
        start_ms: NOW,
        end_ms: NOW + 1,
    };
    let earlier = Period {
        start_ms: NOW - 10,
        end_ms: NOW,
    };
    let usage = Usage {
        input: 5,
        ..Usage::default()
    };
    let past = Landing::Past {
        period: earlier,
        key: key.clone(),
        delta: Tally::one(&usage, true),
    };
    assert!(past.adds_to_stored());
    assert_eq!(past.place(current), (earlier, &key));
    let mut stored = Tally::default();
    stored.add(&usage, false);
    let after = past.tally(Some(stored));
    assert_eq!((after.requests, after.input, after.estimated), (2, 10, 1));
    assert_eq!(past.tally(None).input, 5);
    let now = Landing::Current(key.clone(), stored);
    assert!(!now.adds_to_stored());
    assert_eq!(
        (now.place(current), now.tally(None)),
        ((current, &key), stored)
    );
}

#[test]
fn a_heartbeat_is_due_once_a_minute() {
    assert!(!heartbeat_due(NOW, NOW + HEARTBEAT_MS - 1));
    assert!(heartbeat_due(NOW, NOW + HEARTBEAT_MS));
    assert!(
        !heartbeat_due(NOW, NOW - 5),
        "a clock that steps back is no beat"
    );
}
