//! Whole invoices: a hybrid plan end to end, huge usage, FX, input errors, the usage
//! mapping, the credit balance the edge checks, preview, and the JSON shape.

use super::fixtures::*;
use crate::rating::*;
use crate::usage::Usage;

fn pro_usage() -> RatingInput {
    let mut inp = input(
        "pro",
        vec![
            usage(BillableMeter::InputTokens, "gpt-4o", 60_000_000),
            usage(BillableMeter::InputTokens, "o3-mini", 10_000_000),
            usage(BillableMeter::Images, "gpt-image-1", 35),
        ],
    );
    inp.segments[0].transactions = vec![Transaction {
        model: "gpt-4o".into(),
        value: d("10"),
    }];
    inp
}

#[test]
fn hybrid_plan_end_to_end() {
    let acct = Account {
        grants: vec![CreditGrant {
            id: "g".into(),
            amount: d("20"),
            currency: Some("USD".into()),
            ..CreditGrant::default()
        }],
        ..account("DE")
    };
    let inv = rate(&book(), &acct, &pro_usage()).unwrap();
    assert_reconciles(&inv);
    let amounts: Vec<_> = inv
        .lines
        .iter()
        .map(|l| (l.kind, l.amount, l.tax))
        .collect();
    assert_eq!(
        amounts,
        vec![
            (LineKind::BaseFee, d("49.00"), d("9.31")), // 49 * 0.19 = 9.31
            // 70M used, 5M included, 65M at the volume tier <= 100M: 65 * 1.00; tax 12.35
            (LineKind::Usage, d("65.00"), d("12.35")),
            // (35 - 10 free) / 10 = 2.5 -> 3 packages * 0.50; tax 0.285 -> 0.28 (half-even)
            (LineKind::Usage, d("1.50"), d("0.28")),
            // 10 * 0.2 + 0.01 = 2.01; tax 0.3819 -> 0.38
            (LineKind::Usage, d("2.01"), d("0.38")),
        ]
    );
    let input_line = &inv.lines[1];
    assert_eq!(
        (
            input_line.quantity,
            input_line.included_used,
            input_line.overage
        ),
        (d("70000000"), d("5000000"), d("65000000"))
    );
    // 49 + 65 + 1.50 + 2.01 = 117.51 >= 100: no true-up; tax 22.32; credits 20
    assert_eq!(
        (inv.subtotal, inv.tax, inv.credits_applied, inv.total),
        (d("117.51"), d("22.32"), d("20.00"), d("119.83"))
    );
    assert_eq!(inv.status, InvoiceStatus::Draft);
    assert_eq!(inv.clone().finalize().status, InvoiceStatus::Final);
}

#[test]
fn huge_usage_is_exact() {
    let inp = input(
        "pro",
        vec![usage(
            BillableMeter::InputTokens,
            "gpt-4o",
            1_000_000_000_000,
        )],
    );
    let inv = rate(&book(), &account("US"), &inp).unwrap();
    // (1e12 - 5e6) = 999,995M tokens in the volume tier above 100M: 999995 * 0.80 + 10 = 800006
    assert_eq!(inv.lines[1].amount, d("800006.00"));
    assert_eq!(inv.total, d("800055.00")); // + base 49
}

#[test]
fn foreign_invoice_currency_converts_then_rounds_each_line_once() {
    let acct = Account {
        invoice_currency: Some("EUR".into()),
        ..account("DE")
    };
    let inp = input(
        "payg",
        vec![
            usage(BillableMeter::InputTokens, "gpt-4o", 1_000_000),
            usage(BillableMeter::InputTokens, "other", 1_000_000),
        ],
    );
    let inv = rate(&book(), &acct, &inp).unwrap();
    assert_reconciles(&inv);
    // 2.50 USD * 0.92 = 2.30 EUR; 0.15 * 0.92 = 0.138 -> 0.14; tax 0.437 -> 0.44, 0.0266 -> 0.03
    assert_eq!(inv.lines[0].amount, d("2.30"));
    assert_eq!(
        (inv.lines[1].exact_amount, inv.lines[1].amount),
        (d("0.138"), d("0.14"))
    );
    assert_eq!(
        (inv.subtotal, inv.tax, inv.total),
        (d("2.44"), d("0.47"), d("2.91"))
    );
    assert_eq!(
        (inv.currency.as_str(), inv.price_currency.as_str()),
        ("EUR", "USD")
    );
    assert_eq!(
        (inv.fx_rate, inv.fx_as_of.as_deref()),
        (d("0.92"), Some("2026-03-31"))
    );
}

#[test]
fn inconsistent_input_is_rejected_with_its_path() {
    let err = |inp: RatingInput| {
        let e = rate(&book(), &account("US"), &inp).unwrap_err();
        assert_eq!(e.document, "input");
        (e.path, e.message)
    };
    let (path, msg) = err(input(
        "pro",
        vec![usage(BillableMeter::OutputTokens, "gpt-4o", 1)],
    ));
    assert_eq!(path, "$.segments[0].usage[0]");
    assert!(
        msg.contains("output_tokens") && msg.contains("gpt-4o"),
        "{msg}"
    );
    assert_eq!(err(input("gold", vec![])).0, "$.segments[0].plan");
    let too_big = usage(
        BillableMeter::InputTokens,
        "m",
        crate::catalog::MAX_COUNTER + 1,
    );
    assert_eq!(
        err(input("payg", vec![too_big])).0,
        "$.segments[0].usage[0].units"
    );
    let mut no_pct = input("payg", vec![]);
    no_pct.segments[0].transactions = vec![Transaction {
        model: "m".into(),
        value: d("1"),
    }];
    assert_eq!(err(no_pct).0, "$.segments[0].transactions[0]");
    let mut backwards = input("payg", vec![]);
    backwards.segments.push(Segment {
        plan: "pro".into(),
        from_ms: day(0) - 1,
        ..Segment::default()
    });
    assert_eq!(err(backwards).0, "$.segments[1].from_ms");
    let mut empty = input("payg", vec![]);
    empty.period.end_ms = empty.period.start_ms;
    assert_eq!(err(empty).0, "$.period");
    let e = rate(&book(), &account("FR"), &input("payg", vec![])).unwrap_err();
    assert_eq!(
        (e.document.as_str(), e.path.as_str()),
        ("account", "$.country")
    );
}

#[test]
fn usage_maps_to_meters() {
    let u = Usage {
        input: 1000,
        cached: 400,
        output: 500,
        reasoning: 200,
        images: 2,
        duration_ms: 0,
        ..Usage::default()
    };
    let got: Vec<_> = meter_totals("gpt-4o", &u, 3)
        .into_iter()
        .map(|t| (t.meter, t.units))
        .collect();
    // fresh input 1000 - 400; reasoning is inside output and not a meter; zero seconds left out
    assert_eq!(
        got,
        vec![
            (BillableMeter::InputTokens, 600),
            (BillableMeter::CachedInputTokens, 400),
            (BillableMeter::OutputTokens, 500),
            (BillableMeter::Requests, 3),
            (BillableMeter::Images, 2)
        ]
    );
}

#[test]
fn prepaid_plan_blocks_once_credits_are_exhausted() {
    let book = book();
    let acct = Account {
        grants: vec![CreditGrant {
            id: "g".into(),
            amount: d("1"),
            currency: Some("USD".into()),
            ..CreditGrant::default()
        }],
        ..account("US")
    };
    let prepaid = &book.plans["prepaid"];
    assert_eq!(remaining_balance(&book, &acct, day(1)), d("1.00"));
    assert!(!usage_blocked(
        prepaid,
        remaining_balance(&book, &acct, day(1))
    ));
    // 1M output tokens at 0.002 per 1000 = 2.00; the 1.00 grant is used up
    let inv = rate(
        &book,
        &acct,
        &input(
            "prepaid",
            vec![usage(BillableMeter::OutputTokens, "m", 1_000_000)],
        ),
    )
    .unwrap();
    assert_eq!(
        (inv.credits_applied, inv.total, inv.credit_balance),
        (d("1.00"), d("1.00"), d("0.00"))
    );
    assert!(usage_blocked(prepaid, inv.credit_balance));
    assert!(!usage_blocked(&book.plans["payg"], inv.credit_balance)); // payg does not block
}

#[test]
fn preview_rates_both_books_and_diffs_them() {
    let draft = book_with(|v| v["plans"]["pro"]["base_fee"] = "59.00".into()).unwrap();
    let p = preview(&book(), &draft, &account("US"), &pro_usage()).unwrap();
    // 117.51 now; the draft's base fee is 10.00 higher
    assert_eq!((p.current.total, p.draft.total), (d("117.51"), d("127.51")));
    assert_eq!(p.difference.unwrap().total, d("10.00"));
    let same = preview(&book(), &book(), &account("US"), &pro_usage()).unwrap();
    assert_eq!(same.current, same.draft);
    assert_eq!(same.difference.unwrap().total, d("0.00"));
    let no_pro = book_with(|v| {
        v["plans"].as_object_mut().unwrap().remove("pro");
    })
    .unwrap();
    let e = preview(&book(), &no_pro, &account("US"), &pro_usage()).unwrap_err();
    assert_eq!(
        (e.document.as_str(), e.path.as_str()),
        ("input (draft price book)", "$.segments[0].plan")
    );
}

#[test]
fn invoice_json_has_amounts_as_strings() {
    let inv = rate(&book(), &account("US"), &pro_usage()).unwrap();
    let v = serde_json::to_value(&inv).unwrap();
    assert_eq!(v["lines"][0]["amount"], "49.00");
    assert_eq!(v["total"], "117.51");
    assert_eq!(v["rounding"], "half_even");
    assert_eq!(v["status"], "draft");
    assert_eq!(v["lines"][1]["meter"], "input_tokens");
    assert_eq!(v["lines"][1]["tiers"][0]["unit_price"], "1.00");
}

#[test]
fn the_largest_accepted_input_rates_without_overflow() {
    let unit_meters = [
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "requests",
        "images",
        "seconds",
    ];
    let mut charges: Vec<serde_json::Value> = unit_meters
        .iter()
        .map(|m| serde_json::json!({ "meter": m, "minimum": "1000000", "pricing": { "kind": "graduated", "tiers": [
            { "up_to": 1, "unit_price": "1000000", "flat_fee": "1000000" },
            { "up_to": null, "unit_price": "1000000", "flat_fee": "1000000" } ] } }))
        .collect();
    charges.push(serde_json::json!({ "meter": "transaction_value", "pricing": { "kind": "percentage", "rate": "1000000", "fixed_fee": "1000000" } }));
    let book = book_with(|v| {
        v["fx"]["rates"]["USD"]["KRW"] = "10000".into();
        v["tax"]["countries"]["XX"] = serde_json::json!({ "rate": "0.999999" });
        v["plans"] = serde_json::json!({ "max": { "base_fee": "1000000", "minimum_commitment": "1000000", "charges": charges } });
    })
    .unwrap();
    let max = crate::catalog::MAX_COUNTER;
    let segment = Segment {
        plan: "max".into(),
        from_ms: day(0),
        usage: [
            BillableMeter::InputTokens,
            BillableMeter::CachedInputTokens,
            BillableMeter::OutputTokens,
            BillableMeter::Requests,
            BillableMeter::Images,
            BillableMeter::Seconds,
        ]
        .into_iter()
        .map(|m| usage(m, "m", max))
        .collect(),
        transactions: vec![Transaction {
            model: "m".into(),
            value: d("1000000000000000"),
        }],
    };
    let grant = CreditGrant {
        id: "g".into(),
        amount: d("10000000000000000"),
        credit_rate: Some(d("1000000")),
        ..CreditGrant::default()
    };
    let acct = Account {
        invoice_currency: Some("KRW".into()),
        grants: vec![grant],
        ..account("XX")
    };
    let mut inp = input("max", vec![]);
    inp.segments = vec![segment; MAX_SEGMENTS];
    let inv = rate(&book, &acct, &inp).unwrap();
    assert_reconciles(&inv);
    assert!(inv.subtotal > d("10000000000000000000000000000"));
    // one more unit, transaction or segment is refused instead
    let mut over = inp.clone();
    over.segments[0]
        .usage
        .push(usage(BillableMeter::Images, "n", 1));
    assert_eq!(
        rate(&book, &acct, &over).unwrap_err().path,
        "$.segments[0].usage[6].units"
    );
    let mut over = inp.clone();
    over.segments[0].transactions.push(Transaction {
        model: "m".into(),
        value: d("0.01"),
    });
    assert_eq!(
        rate(&book, &acct, &over).unwrap_err().path,
        "$.segments[0].transactions[1].value"
    );
    over = inp;
    over.segments.push(over.segments[0].clone());
    assert_eq!(rate(&book, &acct, &over).unwrap_err().path, "$.segments");
}

#[test]
fn an_invoice_round_trips_through_json() {
    let inv = rate(&book(), &account("DE"), &pro_usage()).unwrap();
    let back: Invoice = serde_json::from_str(&serde_json::to_string(&inv).unwrap()).unwrap();
    assert_eq!(back, inv);
}

#[test]
fn an_adjustment_is_a_line_of_its_own_that_credits_pay_like_any_other() {
    let acct = Account {
        grants: vec![CreditGrant {
            id: "g".into(),
            amount: d("1000"),
            currency: Some("USD".into()),
            ..CreditGrant::default()
        }],
        ..account("US")
    };
    let plain = rate(&book(), &acct, &pro_usage()).unwrap();
    let mut inp = pro_usage();
    inp.adjustments = vec![Adjustment {
        period: april(),
        reason: "usage recorded after the invoice was final".into(),
        net: d("12.34"),
        tax: d("0.56"),
    }];
    let adjusted = rate(&book(), &acct, &inp).unwrap();
    assert_reconciles(&adjusted);
    let line = adjusted.lines.last().unwrap();
    assert_eq!(line.kind, LineKind::Adjustment);
    assert_eq!((line.net, line.tax), (d("12.34"), d("0.56")));
    assert!(
        line.note.as_deref().unwrap().contains("2026-04-01"),
        "{line:?}"
    );
    assert_eq!(adjusted.subtotal - plain.subtotal, d("12.34"));
    assert_eq!(adjusted.tax - plain.tax, d("0.56"));
    assert_eq!(adjusted.credits_applied - plain.credits_applied, d("12.90"));
    // a correction downwards lowers the invoice the same way
    inp.adjustments[0].net = d("-2.00");
    inp.adjustments[0].tax = d("0");
    let lower = rate(&book(), &acct, &inp).unwrap();
    assert_eq!(plain.subtotal - lower.subtotal, d("2.00"));
}
