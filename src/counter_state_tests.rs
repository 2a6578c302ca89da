//! Tests of the counter state, with a fake clock.
use super::*;
use crate::catalog::Catalog;

const NOW: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

fn catalog() -> Catalog {
    crate::fixtures::catalog()
}

fn ask(input: u64, output: u64) -> AdmitAsk {
    AdmitAsk {
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        input_estimate: input,
        input_reserve: input,
        output_cap: Some(output),
        choices: 1,
        ..AdmitAsk::default()
    }
}

#[test]
fn concurrent_admissions_never_jointly_pass_a_hard_limit() {
    let c = catalog();
    let plan = Plan {
        requests_per_period: Some(50),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    // 200 requests arrive before any settles: exactly 50 are admitted.
    let admitted: Vec<_> = (0..200)
        .filter_map(|i| {
            s.admit(&Pricing::List(&c), &plan, &ask(10, 10), NOW + i)
                .ok()
        })
        .collect();
    assert_eq!(admitted.len(), 50);
    for r in &admitted {
        assert!(s
            .settle(
                r.id,
                &Usage {
                    input: 10,
                    output: 5,
                    ..Usage::default()
                },
                false,
                NOW + 500
            )
            .is_some());
    }
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(10, 10), NOW + 600)
        .is_err());
    let t = s.tallies[&("chat.completions".into(), "gpt-4o-mini".into())];
    // 50 requests * (10 + 5) tokens
    assert_eq!((t.requests, t.usage().tokens()), (50, 750));
}

#[test]
fn settlement_replaces_the_estimate_and_is_idempotent() {
    let c = catalog();
    let plan = Plan {
        tokens_per_minute: Some(1000),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    let r = s
        .admit(&Pricing::List(&c), &plan, &ask(100, 900), NOW)
        .unwrap();
    // 1000 reserved: the minute is full until settlement.
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(1, 0), NOW + 1)
        .is_err());
    let actual = Usage {
        input: 100,
        output: 50,
        ..Usage::default()
    };
    assert!(s.settle(r.id, &actual, false, NOW + 2).is_some());
    assert_eq!(s.settle(r.id, &actual, false, NOW + 3), None);
    // 150 used, so 850 are left this minute.
    assert_eq!(s.window.tokens, 150);
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(800, 50), NOW + 4)
        .is_ok());
}

#[test]
fn spend_counts_settled_cost_plus_reserved_cost() {
    let c = catalog();
    let mut s = CounterState::new(1, NOW);
    let plan = Plan::default();
    let r = s
        .admit(&Pricing::List(&c), &plan, &ask(1_000_000, 1_000_000), NOW)
        .unwrap();
    // gpt-4o-mini: 1M input * 0.15 + 1M output * 0.60 = 0.75 reserved
    assert_eq!(r.cost.to_string(), "0.75");
    s.settle(
        r.id,
        &Usage {
            input: 1_000_000,
            cached: 1_000_000,
            ..Usage::default()
        },
        false,
        NOW,
    );
    // all input cached: 1M * 0.075 = 0.075
    assert_eq!(
        s.totals(&Pricing::List(&c))
            .period_spend
            .normalize()
            .to_string(),
        "0.075"
    );
}

#[test]
fn release_returns_capacity_and_meters_nothing() {
    let c = catalog();
    let plan = Plan {
        max_concurrent: Some(1),
        requests_per_minute: Some(1),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    let r = s.admit(&Pricing::List(&c), &plan, &ask(5, 5), NOW).unwrap();
    assert!(s.admit(&Pricing::List(&c), &plan, &ask(5, 5), NOW).is_err());
    s.release(r.id, NOW);
    assert!(s.tallies.is_empty());
    assert!(s.admit(&Pricing::List(&c), &plan, &ask(5, 5), NOW).is_ok());
}

#[test]
fn period_rolls_over_to_zero_exactly_at_its_end() {
    let c = catalog();
    let plan = Plan {
        requests_per_period: Some(1),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW - 1); // last millisecond of November
    let r = s
        .admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW - 1)
        .unwrap();
    s.settle(r.id, &Usage::default(), false, NOW - 1);
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW - 1)
        .is_err());
    assert!(s.admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW).is_ok());
    assert_eq!(s.period.start_ms, NOW);
}

#[test]
fn minute_window_resets_on_the_minute() {
    let c = catalog();
    let plan = Plan {
        requests_per_minute: Some(1),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    let r = s
        .admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW + 59_999)
        .unwrap();
    s.settle(r.id, &Usage::default(), false, NOW + 59_999);
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW + 59_999)
        .is_err());
    assert!(s
        .admit(&Pricing::List(&c), &plan, &ask(1, 1), NOW + 60_000)
        .is_ok());
    assert!(s.due(NOW + 60_000 + RESERVATION_TTL_MS - 1).is_empty());
    assert_eq!(s.due(NOW + 60_000 + RESERVATION_TTL_MS).len(), 1);
}

#[test]
fn an_opted_in_route_costs_its_price_per_request() {
    let mut c = catalog();
    c.proxy = serde_json::from_value(serde_json::json!({"routes": {
        "moderations": {"per_request": "0.25", "fields": ["input"]}}}))
    .unwrap();
    // 3 requests * 0.25 = 0.75, whatever usage says; a priced model keeps its token price
    let usage = Usage::default();
    assert_eq!(cost_of(&c, "moderations", &usage, 3), Decimal::new(75, 2));
    assert_eq!(cost_of(&c, "unknown-route", &usage, 3), Decimal::ZERO);
    let tokens = Usage {
        input: 1_000_000,
        ..Usage::default()
    };
    assert_eq!(cost_of(&c, "gpt-4o-mini", &tokens, 9), Decimal::new(15, 2));
}

#[test]
fn a_previous_response_carries_its_tokens_into_the_input_bound() {
    let hard = Plan {
        tokens_per_minute: Some(1_000),
        ..Plan::default()
    };
    let mut a = ask(10, 5);
    carry_context(&mut a, &hard, Some((300, 40))).unwrap();
    assert_eq!((a.input_reserve, a.input_estimate), (350, 350));
    // Unknown context: refused under a hard limit, naming the field; admitted otherwise.
    let e = carry_context(&mut ask(10, 5), &hard, Some((0, 0))).unwrap_err();
    assert_eq!(
        (e.status, e.param.as_deref()),
        (400, Some("previous_response_id"))
    );
    assert!(carry_context(&mut ask(10, 5), &hard, None).is_err());
    assert!(carry_context(&mut ask(10, 5), &Plan::default(), None).is_ok());
    let mut huge = ask(u64::MAX, 5);
    carry_context(&mut huge, &hard, Some((u64::MAX, u64::MAX))).unwrap();
    assert_eq!(huge.input_reserve, u64::MAX);
}

#[test]
fn an_unbounded_part_is_refused_only_under_hard_limits() {
    let c = catalog();
    let mut a = ask(10, 5);
    a.unbounded = Some("input_file".into());
    let hard = Plan {
        spend_cap: Some(Decimal::ONE),
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    let e = s.admit(&Pricing::List(&c), &hard, &a, NOW).unwrap_err();
    let part = "input_file".to_string();
    assert_eq!(e, crate::refusal::Refusal::Unbounded { part });
    assert!(s.reservations.is_empty() && s.window.requests == 0);
    assert!(s
        .admit(&Pricing::List(&c), &Plan::default(), &a, NOW)
        .is_ok());
}

#[test]
fn reservations_are_priced_together_by_the_price_book() {
    let c = catalog();
    // The book charges far above the catalog list price: $1 per 1,000 output tokens
    // after the first 10, which are included.
    let book = crate::rating::PriceBook::parse(
        r#"{"version": "b1", "currency": "USD", "tax": {"countries": {"US": {"rate": "0"}}},
        "plans": {"pricey": {"charges": [
          {"meter": "output_tokens", "included_units": 10, "price_per": 1000,
           "pricing": {"kind": "per_unit", "unit_price": "1"}},
          {"meter": "input_tokens", "pricing": {"kind": "per_unit", "unit_price": "0"}},
          {"meter": "requests", "pricing": {"kind": "per_unit", "unit_price": "0"}}]}}}"#,
    )
    .unwrap();
    let pricing = Pricing::for_plan(&c, Some(&book), "pricey");
    let plan = Plan {
        spend_cap: Some(Decimal::new(5, 2)), // $0.05: 10 included + 50 paid tokens
        ..Plan::default()
    };
    let mut s = CounterState::new(1, NOW);
    // Requests of 20 output tokens each, none settled: three make 60 tokens, 50 of
    // them paid ($0.05, the cap); a fourth would make $0.07.
    let admitted: Vec<_> = (0..4)
        .filter_map(|i| s.admit(&pricing, &plan, &ask(0, 20), NOW + i).ok())
        .collect();
    assert_eq!(admitted.len(), 3);
    // The first is half inside the included units ($0.01); the others $0.02 each.
    let held: Vec<Decimal> = admitted.iter().map(|r| r.cost).collect();
    assert_eq!(
        held,
        [Decimal::new(1, 2), Decimal::new(2, 2), Decimal::new(2, 2)]
    );
}

#[test]
fn a_reservation_is_priced_at_the_dearest_rate_its_input_may_bill() {
    let c = catalog();
    let mut a = ask(1_000, 0);
    a.model = "claude-sonnet-4-5".into();
    let plan = Plan::default();
    let fresh = cost_of(&c, &a.model, &reserve_of(&plan, &a), 1);
    a.cache_writes = CacheWrites::OneHour;
    let hour = reserve_of(&plan, &a);
    assert_eq!((hour.input, hour.cache_write_1h), (1_000, 1_000));
    // $3/M fresh, $6/M written to the cache for an hour
    assert_eq!(fresh, Decimal::new(3, 3));
    assert_eq!(cost_of(&c, &a.model, &hour, 1), Decimal::new(6, 3));
    a.audio_reserve = 400;
    let audio = reserve_of(&plan, &a);
    assert_eq!((audio.audio, audio.cache_write_1h), (400, 600));
}

#[test]
fn estimated_requests_keep_their_tokens_apart_until_settled() {
    let usage = |input, output| Usage {
        input,
        output,
        ..Usage::default()
    };
    let mut t = Tally::default();
    t.add(&usage(10, 5), false);
    t.add(&usage(7, 3), true);
    let parts = |t: &Tally| {
        (
            t.input,
            t.output,
            t.estimated_input,
            t.estimated_output,
            t.estimated,
        )
    };
    assert_eq!(parts(&t), (17, 8, 7, 3, 1));
    // The late settlement replaces the estimate with what the provider reported.
    t.replace(&usage(7, 3), &usage(6, 2), false);
    assert_eq!(parts(&t), (16, 7, 0, 0, 0));
    assert_eq!(t.requests, 2);
}

#[test]
fn a_tally_stored_with_whole_seconds_reads_as_milliseconds() {
    let old = Tally::stored(r#"{"requests": 2, "seconds": 7}"#).unwrap();
    assert_eq!((old.requests, old.duration_ms), (2, 7_000));
    let new = Tally::stored(r#"{"requests": 1, "duration_ms": 2500}"#).unwrap();
    assert_eq!(new.duration_ms, 2_500);
    assert_eq!(
        Tally::stored(&serde_json::to_string(&new).unwrap()).unwrap(),
        new
    );
}

const DAY_MS: i64 = 86_400_000;

#[test]
fn closing_a_period_starts_one_at_zero_that_runs_to_the_next_anchor() {
    let c = catalog();
    let mut s = CounterState::new(15, NOW + 20 * DAY_MS);
    let r = s
        .admit(
            &Pricing::List(&c),
            &Plan::default(),
            &ask(5, 5),
            NOW + 20 * DAY_MS,
        )
        .unwrap();
    let used = Usage {
        input: 5,
        ..Usage::default()
    };
    s.settle(r.id, &used, false, NOW + 20 * DAY_MS);
    assert!(!s.tallies.is_empty());
    let at = NOW + 21 * DAY_MS;
    let old = s.close_period(at);
    assert_eq!(old.start_ms, NOW + 14 * DAY_MS, "the period from the 15th");
    assert_eq!(s.period.start_ms, at);
    assert_eq!(s.period.end_ms, period_at(at + 1, 15).end_ms);
    assert!(s.tallies.is_empty());
}
