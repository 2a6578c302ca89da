//! Tests of quota leases on the counter's side, with a fake clock.
use super::*;
use crate::catalog::{Cap, Catalog, Plan};
use crate::lease_grant::{bounds_of, size};
use crate::pricing::Pricing;
use crate::quota::{Totals, MINUTE_MS};
use crate::request::AdmitAsk;
use crate::reservation::Landing;
use crate::usage::Usage;

const NOW: i64 = 1_764_547_200_000 + 10_000; // 2025-12-01T00:00:10Z

fn catalog() -> Catalog {
    crate::fixtures::catalog()
}

fn ask() -> AdmitAsk {
    AdmitAsk {
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        input_estimate: 10,
        input_reserve: 10,
        output_cap: Some(10),
        choices: 1,
        ..AdmitAsk::default()
    }
}

fn key() -> MeterKey {
    ("chat.completions".into(), "gpt-4o-mini".into())
}

fn used(n: u64) -> Vec<(MeterKey, Tally)> {
    let mut t = Tally::default();
    for _ in 0..n {
        t.add(
            &Usage {
                input: 10,
                output: 5,
                ..Usage::default()
            },
            false,
        );
    }
    vec![(key(), t)]
}

/// A report of `admitted` requests of which `finished` finished, each 20 tokens bound.
fn report(lease: u64, seq: u64, admitted: u64, finished: u64, done: bool) -> Report {
    let slice = |n: u64| Slice {
        requests: n,
        tokens: 20 * n,
        cost: Decimal::ZERO,
    };
    Report {
        lease,
        seq,
        admitted: slice(admitted),
        finished: slice(finished),
        usage: used(finished),
        done,
    }
}

fn plan(requests: u64) -> Plan {
    Plan {
        requests_per_period: Some(requests),
        ..Plan::default()
    }
}

#[test]
fn a_lease_is_a_share_of_what_is_left_and_none_near_the_limit() {
    let one = Slice {
        requests: 1,
        tokens: 20,
        cost: Decimal::ZERO,
    };
    let t = |used| Totals {
        period_requests: used,
        ..Totals::default()
    };
    assert_eq!(size(&plan(800), &t(0), &one).unwrap().requests, 100);
    assert_eq!(size(&plan(800), &t(784), &one).unwrap().requests, 2);
    assert_eq!(
        size(&plan(800), &t(785), &one),
        None,
        "a share of one is reserved alone"
    );
    assert_eq!(
        size(&Plan::default(), &t(0), &one).unwrap().requests,
        MAX_LEASE_REQUESTS
    );
    let tokens = Plan {
        included_tokens: Some(1_600),
        token_cap: Cap::Hard,
        ..Plan::default()
    };
    let g = size(&tokens, &t(0), &one).unwrap();
    assert_eq!(
        (g.requests, g.tokens),
        (10, Some(200)),
        "an eighth of the tokens"
    );
    let spend = Plan {
        spend_cap: Some(Decimal::new(8, 0)),
        ..Plan::default()
    };
    let costly = Slice {
        cost: Decimal::new(25, 2),
        ..one.clone()
    };
    let g = size(&spend, &t(0), &costly).unwrap();
    assert_eq!((g.requests, g.cost), (4, Some(Decimal::ONE)));
}

#[test]
fn leases_and_settled_usage_never_pass_a_limit_and_the_end_is_exact() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let plan = plan(50);
    let mut s = CounterState::new(1, NOW);
    let mut admitted = 0u64;
    // Holders ask for leases and spend them whole; near the end each request is
    // reserved on its own.
    for i in 0..200 {
        let now = NOW + i;
        match s.grant_lease(&pricing, &plan, &ask(), now) {
            Ok(Some(l)) => {
                let n = l.grant.requests;
                admitted += n;
                let applied = s.apply_report(&report(l.id, 1, n, n, true), now).unwrap();
                assert_eq!(applied.change, LeaseChange::Drop(l.id));
            }
            Ok(None) => {
                if s.admit(&pricing, &plan, &ask(), now).is_ok() {
                    admitted += 1;
                }
            }
            Err(_) => {}
        }
        assert!(s.totals(&pricing).period_requests <= 50);
    }
    assert_eq!(admitted, 50, "exactly the quota once every lease came back");
    let t = s.tallies[&key()];
    assert_eq!(t.requests + s.reservations.len() as u64, 50);
}

#[test]
fn outstanding_leases_count_as_reserved() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let plan = plan(80);
    let mut s = CounterState::new(1, NOW);
    let l = s
        .grant_lease(&pricing, &plan, &ask(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(l.grant.requests, 10);
    assert_eq!(s.totals(&pricing).period_requests, 10);
    assert_eq!(s.minute_totals().minute_requests, 10);
    // 3 admitted, 2 finished: 8 unused plus 1 running still held.
    s.apply_report(&report(l.id, 3, 3, 2, false), NOW + 5)
        .unwrap();
    assert_eq!(s.tallies[&key()].requests, 2);
    assert_eq!(s.totals(&pricing).period_requests, 2 + 8);
    // Done: only the running one is held.
    s.apply_report(&report(l.id, 4, 3, 2, true), NOW + 6)
        .unwrap();
    assert_eq!(s.totals(&pricing).period_requests, 3);
}

#[test]
fn a_duplicated_or_reordered_report_counts_once() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let mut s = CounterState::new(1, NOW);
    let l = s
        .grant_lease(&pricing, &plan(800), &ask(), NOW)
        .unwrap()
        .unwrap();
    let (early, late) = (report(l.id, 2, 4, 2, false), report(l.id, 5, 6, 5, false));
    let applied = s.apply_report(&late, NOW + 3).unwrap();
    assert!(matches!(applied.landings[0], Landing::Current(_, t) if t.requests == 5));
    assert_eq!(s.apply_report(&early, NOW + 4), None, "older than the last");
    assert_eq!(s.apply_report(&late, NOW + 4), None, "the same again");
    assert_eq!(s.tallies[&key()].requests, 5);
    assert_eq!(
        s.window.requests, 5,
        "the minute counts what finished in it"
    );
    let last = s
        .apply_report(&report(l.id, 9, 6, 6, true), NOW + 5)
        .unwrap();
    assert_eq!(last.change, LeaseChange::Drop(l.id));
    assert_eq!(s.tallies[&key()].requests, 6);
    assert_eq!(s.apply_report(&report(l.id, 10, 6, 6, true), NOW + 6), None);
    assert_eq!(s.seq, 2, "two reports landed usage");
}

#[test]
fn a_silent_holder_frees_its_capacity_after_the_grace_and_is_counted() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let mut s = CounterState::new(1, NOW);
    let l = s
        .grant_lease(&pricing, &plan(800), &ask(), NOW)
        .unwrap()
        .unwrap();
    s.apply_report(&report(l.id, 1, 3, 1, false), NOW + 10)
        .unwrap();
    assert_eq!(s.expire_lease(l.until_ms + RELEASE_GRACE_MS - 1), None);
    let closed = s.expire_lease(l.until_ms + RELEASE_GRACE_MS).unwrap();
    assert!(matches!(closed, LeaseChange::Store(ref kept) if kept.closed));
    assert_eq!(s.lease_losses.unreturned, 1);
    assert_eq!(
        s.totals(&pricing).period_requests,
        1 + 2,
        "its two running requests"
    );
    // Nobody reports them: they are dropped at the deadline, and counted.
    let deadline = s.leases[&l.id].deadline_ms;
    assert_eq!(s.expire_lease(deadline - 1), None);
    assert_eq!(s.expire_lease(deadline), Some(LeaseChange::Drop(l.id)));
    assert_eq!(s.lease_losses.expired_running, 1);
    assert_eq!(s.totals(&pricing).period_requests, 1);
    assert_eq!(
        s.apply_report(&report(l.id, 2, 3, 3, true), deadline + 1),
        None
    );
}

#[test]
fn a_running_request_keeps_its_lease_alive_and_an_idle_one_ends_with_its_report() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let mut s = CounterState::new(1, NOW);
    let l = s
        .grant_lease(&pricing, &plan(800), &ask(), NOW)
        .unwrap()
        .unwrap();
    let beat = NOW + 20 * 60_000;
    s.apply_report(&report(l.id, 1, 1, 0, true), beat).unwrap();
    assert!(s.leases[&l.id].deadline_ms >= beat + crate::reservation::RESERVATION_TTL_MS);
    assert_eq!(s.expire_lease(beat + 60_000), None, "held while it runs");
    let idle = s
        .grant_lease(&pricing, &plan(800), &ask(), NOW)
        .unwrap()
        .unwrap();
    let applied = s
        .apply_report(&report(idle.id, 1, 0, 0, true), NOW + 1)
        .unwrap();
    assert_eq!(applied.change, LeaseChange::Drop(idle.id));
    assert_eq!(s.lease_losses, LeaseLosses::default());
}

#[test]
fn a_lease_window_never_crosses_a_minute_and_lands_in_its_own_period() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let mut s = CounterState::new(1, NOW);
    let late = NOW - 10_000 + MINUTE_MS - 500; // 500 ms before the minute's end
    let l = s
        .grant_lease(&pricing, &plan(800), &ask(), late)
        .unwrap()
        .unwrap();
    assert_eq!(l.until_ms, NOW - 10_000 + MINUTE_MS);
    let end = s.period.end_ms;
    let l = s
        .grant_lease(&pricing, &plan(800), &ask(), end - 100)
        .unwrap()
        .unwrap();
    assert_eq!(l.until_ms, end);
    let first = s.period;
    s.roll(end + 5);
    let applied = s
        .apply_report(&report(l.id, 1, 1, 1, true), end + 5)
        .unwrap();
    let want = Landing::Past {
        period: first,
        key: key(),
        delta: used(1)[0].1,
    };
    assert_eq!(applied.landings, vec![want]);
    assert!(s.tallies.is_empty());
}

#[test]
fn concurrency_is_leased_in_slots_and_the_plan_still_refuses() {
    let c = catalog();
    let pricing = Pricing::List(&c);
    let mut s = CounterState::new(1, NOW);
    let concurrent = Plan {
        max_concurrent: Some(4),
        ..Plan::default()
    };
    assert_eq!(
        s.grant_lease(&pricing, &concurrent, &ask(), NOW),
        Ok(None),
        "4/8 slots"
    );
    let wide = Plan {
        max_concurrent: Some(64),
        ..Plan::default()
    };
    let l = s
        .grant_lease(&pricing, &wide, &ask(), NOW)
        .unwrap()
        .unwrap();
    assert_eq!(l.grant.concurrent, Some(8));
    assert_eq!(
        s.totals(&pricing).in_flight,
        8,
        "its slots count as running"
    );
    s.apply_report(&report(l.id, 1, 3, 1, true), NOW + 1)
        .unwrap();
    assert_eq!(
        s.totals(&pricing).in_flight,
        2,
        "returned: its two running requests"
    );
    let refused = s.grant_lease(&pricing, &plan(0), &ask(), NOW);
    assert!(refused.is_err(), "a request the plan refuses is refused");
    let spend = Plan {
        spend_cap: Some(Decimal::ONE),
        ..Plan::default()
    };
    let one = bounds_of(&spend, &c, &ask());
    assert!(
        one.cost > Decimal::ZERO,
        "a spend cap leases money by the list price"
    );
}
