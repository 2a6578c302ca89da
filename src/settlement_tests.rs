//! Tests of settlements, releases and expiries as the counter object stores them.
use super::*;
use crate::catalog::{Catalog, Plan};
use crate::pricing::Pricing;
use crate::request::AdmitAsk;
use crate::reservation::RESERVATION_TTL_MS;

const NOW: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a period start

fn reserve(s: &mut CounterState, idempotent: bool, at: i64) -> u64 {
    let catalog: Catalog = crate::fixtures::catalog();
    let ask = AdmitAsk {
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        input_estimate: 10,
        input_reserve: 10,
        output_cap: Some(5),
        choices: 1,
        ..AdmitAsk::default()
    };
    let mut r = s
        .admit(&Pricing::List(&catalog), &Plan::default(), &ask, at)
        .unwrap();
    if idempotent {
        r.idempotent = true;
        s.reservations.insert(r.id, r.clone());
    }
    r.id
}

fn used(input: u64) -> Usage {
    Usage {
        input,
        ..Usage::default()
    }
}

fn answer() -> Replay {
    Replay {
        status: 200,
        content_type: "application/json".into(),
        body: "{}".into(),
    }
}

#[test]
fn a_settlement_lands_once_and_keeps_an_idempotent_answer() {
    let mut s = CounterState::new(1, NOW);
    let id = reserve(&mut s, true, NOW);
    let first = settle(&mut s, id, Some(&used(7)), false, Some(answer()), NOW + 1);
    let Settled::Landed { late, replay, .. } = first else {
        panic!("not landed: {first:?}");
    };
    assert!(!late);
    assert_eq!(replay, Some(answer()));
    let again = settle(&mut s, id, Some(&used(7)), false, Some(answer()), NOW + 2);
    assert_eq!(
        again,
        Settled::Unknown,
        "a repeated settlement changes nothing"
    );
}

#[test]
fn an_idempotent_answer_that_was_not_kept_tells_retries_it_was_metered() {
    let mut s = CounterState::new(1, NOW);
    let id = reserve(&mut s, true, NOW);
    let Settled::Landed { replay, .. } = settle(&mut s, id, Some(&used(7)), false, None, NOW)
    else {
        panic!("not landed");
    };
    assert_eq!(replay.map(|r| r.status), Some(409));
    let plain = reserve(&mut s, false, NOW);
    let Settled::Landed { replay, .. } = settle(&mut s, plain, Some(&used(1)), false, None, NOW)
    else {
        panic!("not landed");
    };
    assert_eq!(replay, None, "nothing is kept for a request without a key");
}

#[test]
fn a_release_meters_nothing_and_happens_once() {
    let mut s = CounterState::new(1, NOW);
    let id = reserve(&mut s, false, NOW);
    assert_eq!(
        settle(&mut s, id, None, false, None, NOW),
        Settled::Released
    );
    assert_eq!(settle(&mut s, id, None, false, None, NOW), Settled::Unknown);
    assert!(s.tallies.is_empty() && s.window.requests == 0);
}

#[test]
fn an_expiry_bills_the_bound_and_a_late_settlement_replaces_it() {
    let mut s = CounterState::new(1, NOW);
    let id = reserve(&mut s, true, NOW);
    assert!(expire_due(&mut s, NOW + RESERVATION_TTL_MS - 1).is_empty());
    let expired = expire_due(&mut s, NOW + RESERVATION_TTL_MS);
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(e.id, id);
    assert!(e.keep.is_some(), "same period: kept for a late settlement");
    assert_eq!(e.replay.as_ref().map(|r| r.status), Some(409));
    let late = settle(
        &mut s,
        id,
        Some(&used(3)),
        false,
        None,
        NOW + RESERVATION_TTL_MS + 1,
    );
    assert!(
        matches!(late, Settled::Landed { late: true, .. }),
        "{late:?}"
    );
}

#[test]
fn an_expiry_after_its_period_ended_is_not_kept() {
    let period_end = CounterState::new(1, NOW).period.end_ms;
    let mut s = CounterState::new(1, NOW);
    let at = period_end - 1;
    reserve(&mut s, false, at);
    let expired = expire_due(&mut s, at + RESERVATION_TTL_MS);
    assert_eq!(expired.len(), 1);
    assert!(expired[0].keep.is_none(), "its period is over");
    assert!(matches!(expired[0].landing, Landing::Past { .. }));
}

#[test]
fn expiries_come_one_at_a_time_so_each_is_stored_before_the_next() {
    let mut s = CounterState::new(1, NOW);
    let (a, b) = (reserve(&mut s, false, NOW), reserve(&mut s, false, NOW));
    let at = NOW + RESERVATION_TTL_MS;
    let first = expire_next(&mut s, at).unwrap();
    assert!(s.reservations.contains_key(&b) || s.reservations.contains_key(&a));
    assert_eq!(s.reservations.len(), 1, "only one expired so far");
    let second = expire_next(&mut s, at).unwrap();
    assert_ne!(first.id, second.id);
    assert!(expire_next(&mut s, at).is_none());
}

#[test]
fn a_heartbeat_for_a_reservation_that_is_gone_is_told_so() {
    let mut s = CounterState::new(1, NOW);
    let id = reserve(&mut s, false, NOW);
    let later = NOW + RESERVATION_TTL_MS / 2;
    let kept = extend(&mut s, id, later).unwrap();
    assert!(kept.deadline_ms > NOW + RESERVATION_TTL_MS / 2);
    settle(&mut s, id, Some(&used(1)), false, None, later);
    let e = extend(&mut s, id, later).unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (410, Some("reservation_gone"))
    );
}
