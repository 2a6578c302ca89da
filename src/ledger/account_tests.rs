//! Tests of the account documents and what the counter is told of credits.
use super::*;

fn doc(plan: &str, livemode: Value) -> Value {
    json!({"plan": plan, "livemode": livemode,
        "account": {"customer_id": "c", "country": "US"}})
}

#[test]
fn an_account_names_a_plan_of_the_book_and_fits_it() {
    let book = crate::fixtures::price_book();
    assert_eq!(check(&book, &doc("pro", Value::Null)), Ok(true));
    assert_eq!(check(&book, &doc("pro", json!(false))), Ok(false));
    let e = check(&book, &doc("gold", Value::Null)).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("unknown_plan"));
    let mut bad = doc("pro", Value::Null);
    bad["account"]["country"] = json!("FR");
    let e = check(&book, &bad).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("rating_error"));
}

#[test]
fn a_grant_is_added_once_and_voided_once() {
    let mut grants = Vec::new();
    let g = json!({"id": "g1", "amount": "10", "currency": "USD"});
    add_grant(&mut grants, &g).unwrap();
    let again = add_grant(&mut grants, &g).unwrap_err();
    assert_eq!(again.status, 409);
    let bad = add_grant(&mut grants, &json!({"id": "g2"})).unwrap_err();
    assert_eq!(bad.status, 400);
    assert_eq!(grants.len(), 1);
    let voided = void_grant(&mut grants, "g1", 500).unwrap();
    assert_eq!(voided["voided_at_ms"], 500);
    assert_eq!(void_grant(&mut grants, "g1", 600).unwrap_err().status, 409);
    assert_eq!(grants[0]["voided_at_ms"], 500, "the first void stands");
    assert_eq!(
        void_grant(&mut grants, "nope", 600).unwrap_err().status,
        404
    );
}

#[test]
fn the_counter_hears_of_credits_only_when_it_changes_and_the_plan_blocks() {
    let book = crate::fixtures::price_book();
    let mut plan = book.plans["pro"].clone();
    let zero = Decimal::ZERO;
    assert_eq!(
        credit_news(&plan, zero, "USD", None),
        None,
        "this plan never blocks"
    );
    plan.block_when_credits_exhausted = true;
    let blocked = credit_news(&plan, zero, "USD", None).unwrap();
    assert!(blocked.blocked);
    assert_eq!(
        credit_news(&plan, zero, "USD", Some(true)),
        None,
        "told already"
    );
    let topped = credit_news(&plan, Decimal::TEN, "USD", Some(true)).unwrap();
    assert!(!topped.blocked && topped.balance == "10");
    // Blocked, then moved to a plan that never blocks: the counter is let go, once.
    plan.block_when_credits_exhausted = false;
    assert!(may_need_news(&plan, Some(true)) && !may_need_news(&plan, Some(false)));
    let freed = credit_news(&plan, zero, "USD", Some(true)).unwrap();
    assert!(!freed.blocked);
    assert_eq!(credit_news(&plan, zero, "USD", Some(false)), None);
}

#[test]
fn management_calls_name_their_mode_and_their_customer() {
    assert_eq!(livemode_of(""), Ok(true));
    assert_eq!(livemode_of("a=1&livemode=false"), Ok(false));
    assert_eq!(livemode_of("livemode=true"), Ok(true));
    let e = livemode_of("livemode=no").unwrap_err();
    assert_eq!(e.param.as_deref(), Some("livemode"));
    let doc = json!({"plan": "pro", "account": {"customer_id": "acme"}});
    let put = for_customer("acme", doc.clone(), false).unwrap();
    assert_eq!(put["livemode"], false);
    let other = for_customer("globex", doc, true).unwrap_err();
    assert_eq!(other.param.as_deref(), Some("account.customer_id"));
}
