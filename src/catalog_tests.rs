//! Tests of `catalog`.
use super::*;
use std::str::FromStr;

const DEMO: &str = include_str!("../catalog.json");

fn with(patch: impl Fn(&mut serde_json::Value)) -> Result<Catalog, CatalogError> {
    let mut v: serde_json::Value = serde_json::from_str(DEMO).unwrap();
    patch(&mut v);
    Catalog::parse(&v.to_string())
}

#[test]
fn demo_catalog_is_valid() {
    let c = Catalog::parse(DEMO).unwrap();
    assert!(c.plan("starter").is_some());
    assert!(c.price("gpt-4o-mini").is_some());
}

#[test]
fn unknown_field_is_rejected_with_its_path() {
    let err = with(|v| v["plans"]["starter"]["requests_per_minit"] = 5.into()).unwrap_err();
    assert_eq!(err.path, "$.plans.starter.requests_per_minit");
    assert!(err.message.contains("requests_per_minit"), "{err}");
}

#[test]
fn bad_number_is_rejected_with_its_path() {
    let err = with(|v| v["plans"]["starter"]["tokens_per_minute"] = (-3).into()).unwrap_err();
    assert_eq!(err.path, "$.plans.starter.tokens_per_minute");
    let err = with(|v| v["models"]["gpt-4o-mini"]["input_per_mtok"] = "abc".into()).unwrap_err();
    assert_eq!(err.path, "$.models.gpt-4o-mini.input_per_mtok");
}

#[test]
fn a_route_priced_per_request_cannot_be_named_like_a_model() {
    let err = with(|v| {
        v["models"]["moderations"] = serde_json::json!({"input_per_mtok": "1"});
        v["proxy"] = serde_json::json!({"routes": {"moderations": {"per_request": "1", "fields": ["input"]}}});
    });
    assert_eq!(err.unwrap_err().path, "$.proxy.routes.moderations");
    let images = with(|v| {
        v["proxy"] = serde_json::json!({"routes": {"images.generations": {"per_request": "0.04", "fields": ["prompt", "user"]}}});
    });
    assert!(images.is_ok(), "{:?}", images.err());
}

#[test]
fn semantic_problems_are_rejected() {
    let neg = with(|v| v["models"]["gpt-4o-mini"]["output_per_mtok"] = "-1".into());
    assert_eq!(
        neg.unwrap_err().path,
        "$.models.gpt-4o-mini.output_per_mtok"
    );
    let zero = with(|v| v["plans"]["starter"]["max_concurrent"] = 0.into());
    assert_eq!(zero.unwrap_err().path, "$.plans.starter.max_concurrent");
    let cur = with(|v| v["currency"] = "XYZ".into());
    assert_eq!(cur.unwrap_err().path, "$.currency");
    let big = with(|v| v["plans"]["starter"]["included_tokens"] = (1u64 << 60).into());
    assert_eq!(big.unwrap_err().path, "$.plans.starter.included_tokens");
}

#[test]
fn only_token_and_spend_limits_need_an_output_cap() {
    let hard = |p: Plan| p.needs_output_cap();
    assert!(!hard(Plan {
        requests_per_minute: Some(1),
        max_concurrent: Some(1),
        ..Plan::default()
    }));
    assert!(!hard(Plan {
        included_tokens: Some(1),
        token_cap: Cap::Soft,
        ..Plan::default()
    }));
    assert!(hard(Plan {
        included_tokens: Some(1),
        token_cap: Cap::Hard,
        ..Plan::default()
    }));
    assert!(hard(Plan {
        tokens_per_minute: Some(1),
        ..Plan::default()
    }));
    assert!(hard(Plan {
        spend_cap: Some(Decimal::ONE),
        ..Plan::default()
    }));
}

#[test]
fn cost_prices_cached_and_fresh_input_separately() {
    let price = ModelPrice {
        input_per_mtok: Decimal::from_str("2.50").unwrap(),
        cached_input_per_mtok: Some(Decimal::from_str("1.25").unwrap()),
        output_per_mtok: Decimal::from_str("10").unwrap(),
        ..ModelPrice::default()
    };
    let usage = Usage {
        input: 1000,
        cached: 400,
        output: 500,
        ..Usage::default()
    };
    // (600*2.50 + 400*1.25 + 500*10) / 1e6 = (1500 + 500 + 5000) / 1e6 = 0.007
    assert_eq!(price.cost(&usage), Decimal::from_str("0.007").unwrap());
}

#[test]
fn cost_is_exact_for_huge_usage() {
    let price = ModelPrice {
        input_per_mtok: Decimal::from_str("0.15").unwrap(),
        cached_input_per_mtok: None,
        output_per_mtok: Decimal::from_str("0.60").unwrap(),
        ..ModelPrice::default()
    };
    let usage = Usage {
        input: 1_000_000_000_000,
        output: 3,
        ..Usage::default()
    };
    // 1e12*0.15/1e6 + 3*0.60/1e6 = 150000 + 0.0000018
    assert_eq!(
        price.cost(&usage),
        Decimal::from_str("150000.0000018").unwrap()
    );
}
