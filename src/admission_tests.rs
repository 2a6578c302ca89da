//! Tests of the admission decision, natively, with the stored state handed in.
use super::*;
use crate::catalog::{Catalog, Plan};
use rust_decimal::Decimal;

const NOW: i64 = 1_764_547_200_000; // 2025-12-01T00:00:00Z

fn hard() -> Plan {
    Plan {
        spend_cap: Some(Decimal::ONE),
        default_max_output_tokens: 64,
        ..Plan::default()
    }
}

fn ask(output_cap: Option<u64>) -> AdmitAsk {
    AdmitAsk {
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        input_estimate: 10,
        input_reserve: 10,
        output_cap,
        choices: 1,
        max_output: Some(50),
        ..AdmitAsk::default()
    }
}

fn key() -> (String, String) {
    ("retry-1".into(), "body-hash".into())
}

struct Case {
    catalog: Catalog,
    plan: Plan,
    credit: Option<CreditState>,
    prior: Option<Prior>,
    idempotency: Option<(String, String)>,
    ask: AdmitAsk,
}

impl Case {
    fn new(plan: Plan) -> Case {
        Case {
            catalog: crate::fixtures::catalog(),
            plan,
            credit: None,
            prior: None,
            idempotency: None,
            ask: ask(None),
        }
    }

    fn decide(&self, state: &mut CounterState, now_ms: i64) -> Result<Decision, ApiError> {
        let pricing = Pricing::List(&self.catalog);
        let held = Held {
            plan_name: "pro",
            plan: &self.plan,
            pricing: &pricing,
            credit: self.credit.as_ref(),
            prior: self.prior.clone(),
        };
        let asked = Asked {
            ask: &self.ask,
            idempotency: self.idempotency.as_ref(),
            now_ms,
        };
        decide(state, held, asked)
    }
}

fn prior(body_hash: &str, replay: Option<Replay>) -> Prior {
    Prior {
        body_hash: body_hash.into(),
        created_ms: NOW - 1_000,
        replay: replay.map(|r| serde_json::to_string(&r).unwrap()),
    }
}

#[test]
fn a_key_is_live_revoked_or_unknown() {
    let row = |hash: &str, revoked_ms| KeyRow {
        hash: hash.into(),
        id: format!("key_{hash}"),
        mode: "live".into(),
        created_ms: NOW,
        revoked_ms,
    };
    let keys = [row("aa", None), row("bb", Some(NOW))];
    assert!(verify(&keys, "aa").is_ok());
    let revoked = verify(&keys, "bb").unwrap_err();
    assert_eq!(revoked.status, 401);
    assert!(revoked.message.contains("revoked"), "{}", revoked.message);
    let unknown = verify(&keys, "cc").unwrap_err();
    assert!(unknown.message.contains("Incorrect"), "{}", unknown.message);
}

#[test]
fn a_retry_is_replayed_refused_while_running_or_an_error_with_another_body() {
    let replay = Replay {
        status: 200,
        content_type: "application/json".into(),
        body: "{\"ok\":true}".into(),
    };
    let mut c = Case::new(hard());
    c.idempotency = Some(key());
    let mut s = CounterState::new(1, NOW);

    c.prior = Some(prior("body-hash", Some(replay.clone())));
    let d = c.decide(&mut s, NOW).unwrap();
    assert!(matches!(&d.answer, AdmitResponse::Replayed { replay: r } if *r == replay));
    assert!(d.reserved.is_none());

    c.prior = Some(prior("body-hash", None));
    let running = c.decide(&mut s, NOW).unwrap_err();
    assert_eq!((running.status, running.retry_after_s), (409, Some(1)));

    c.prior = Some(prior("other-body", Some(replay)));
    let reused = c.decide(&mut s, NOW).unwrap_err();
    assert_eq!(reused.code.as_deref(), Some("idempotency_key_reused"));
    assert!(s.reservations.is_empty() && s.window.requests == 0);
}

#[test]
fn a_stored_answer_is_read_only_for_a_retry_that_gets_it() {
    let mut c = Case::new(hard());
    c.idempotency = Some(key());
    let broken = |created_ms| Prior {
        body_hash: "body-hash".into(),
        created_ms,
        replay: Some("{not json".into()),
    };
    let mut s = CounterState::new(1, NOW);
    c.prior = Some(broken(NOW - 1_000));
    assert_eq!(c.decide(&mut s, NOW).unwrap_err().status, 500);
    // Past its TTL the broken row is forgotten: the retry runs as a new request.
    c.prior = Some(broken(NOW - IDEMPOTENCY_TTL_MS));
    assert!(c.decide(&mut s, NOW).unwrap().reserved.is_some());
}

#[test]
fn a_stored_request_past_its_ttl_is_forgotten_and_the_retry_runs() {
    let mut c = Case::new(hard());
    c.idempotency = Some(key());
    c.prior = Some(Prior {
        created_ms: NOW - IDEMPOTENCY_TTL_MS,
        ..prior("other-body", None)
    });
    let mut s = CounterState::new(1, NOW);
    let d = c.decide(&mut s, NOW).unwrap();
    let r = d.reserved.expect("admitted");
    assert!(r.idempotent && s.reservations[&r.id].idempotent);
}

#[test]
fn used_up_credits_refuse_before_any_reservation() {
    let mut c = Case::new(Plan::default());
    c.credit = Some(CreditState {
        blocked: true,
        balance: "0.00".into(),
        currency: "USD".into(),
    });
    let mut s = CounterState::new(1, NOW);
    let d = c.decide(&mut s, NOW).unwrap();
    let AdmitResponse::Refused { refusal, .. } = d.answer else {
        panic!("not refused: {:?}", d.answer);
    };
    assert!(matches!(refusal, Refusal::CreditsUsedUp { .. }));
    assert!(d.reserved.is_none() && s.reservations.is_empty());
    c.credit.as_mut().unwrap().blocked = false;
    assert!(c.decide(&mut s, NOW).unwrap().reserved.is_some());
}

#[test]
fn a_limit_refuses_with_the_rate_headers_and_reserves_nothing() {
    let plan = Plan {
        requests_per_minute: Some(1),
        ..hard()
    };
    let c = Case::new(plan);
    let mut s = CounterState::new(1, NOW);
    assert!(c.decide(&mut s, NOW).unwrap().reserved.is_some());
    let d = c.decide(&mut s, NOW + 1).unwrap();
    let AdmitResponse::Refused { refusal, headers } = d.answer else {
        panic!("not refused: {:?}", d.answer);
    };
    assert!(matches!(
        refusal,
        Refusal::RequestsPerMinute {
            limit: 1,
            used: 1,
            ..
        }
    ));
    let left = headers
        .iter()
        .find(|(k, _)| k == "x-ratelimit-remaining-requests");
    assert_eq!(left.map(|(_, v)| v.as_str()), Some("0"));
    assert!(d.reserved.is_none());
    assert_eq!(s.reservations.len(), 1);
}

#[test]
fn the_output_cap_is_added_only_when_hard_limits_need_it() {
    let cap_of = |plan: Plan, output_cap: Option<u64>| {
        let mut c = Case::new(plan);
        c.ask = ask(output_cap);
        let mut s = CounterState::new(1, NOW);
        match c.decide(&mut s, NOW).unwrap().answer {
            AdmitResponse::Admitted { output_cap, .. } => output_cap,
            other => panic!("not admitted: {other:?}"),
        }
    };
    // The plan's default (64) above the model's most (50): the model's most.
    assert_eq!(cap_of(hard(), None), Some(50));
    let low = Plan {
        default_max_output_tokens: 20,
        ..hard()
    };
    assert_eq!(cap_of(low, None), Some(20));
    assert_eq!(cap_of(hard(), Some(30)), None);
    assert_eq!(cap_of(Plan::default(), None), None);
}

#[test]
fn an_admission_answers_its_reservation_and_the_usage_it_reserved() {
    let c = Case::new(hard());
    let mut s = CounterState::new(1, NOW);
    let d = c.decide(&mut s, NOW).unwrap();
    let r = d.reserved.unwrap();
    let AdmitResponse::Admitted {
        reservation,
        plan,
        reserved,
        spend_basis,
        ..
    } = d.answer
    else {
        panic!("not admitted");
    };
    assert_eq!((reservation, plan.as_str()), (r.id, "pro"));
    assert_eq!((reserved.input, reserved.output), (10, 50));
    assert!(spend_basis.is_none(), "list prices need no period totals");
    assert!(!r.idempotent);
}

#[test]
fn an_admin_is_told_a_customer_does_not_exist_where_a_key_is_refused() {
    assert_eq!(unknown_customer().status, 401);
    assert_eq!(for_admin(unknown_customer()).status, 404);
    let other = ApiError::internal("storage");
    assert_eq!(for_admin(other).status, 500);
}
