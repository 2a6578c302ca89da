//! Rating throughput of the pure core, for `scripts/bench`: parses native batches and
//! sums their records into per-period totals (what the rating endpoint does per batch),
//! then rates the totals into an invoice. Prints one JSON line.
//! `rating_core_bench [RECORDS] [CUSTOMERS]`

use edgemeter::counter_state::Tally;
use edgemeter::flush::{record_id, render, Batch, Format, UsageRecord};
use edgemeter::ledger::{parse_batch, rating_input, tally_of};
use edgemeter::period::Period;
use edgemeter::rating::{rate, Account, PriceBook};
use std::collections::BTreeMap;
use std::time::Instant;

const MODELS: [&str; 3] = ["gpt-4o-mini", "gpt-4o", "o3-mini"];

fn record(i: u64, customers: u64, period: Period) -> UsageRecord {
    let customer = format!("c{}", i % customers);
    let model = MODELS[(i % 3) as usize];
    UsageRecord {
        id: record_id(
            &customer,
            period.start_ms,
            "chat.completions",
            model,
            (i, i),
            false,
        ),
        customer,
        period_start_ms: period.start_ms,
        period_end_ms: period.end_ms,
        meter: "chat.completions".into(),
        model: model.into(),
        seq_from: i,
        seq_to: i,
        requests: 1,
        input_tokens: 1_000 + i % 97,
        output_tokens: 200 + i % 31,
        cached_tokens: i % 13,
        plan: "open".into(),
        recorded_at_ms: period.start_ms,
        ..UsageRecord::default()
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let records = args.next().unwrap_or(1_000_000);
    let customers = args.next().unwrap_or(1).max(1);
    let period = Period {
        start_ms: 1_764_547_200_000,
        end_ms: 1_767_225_600_000,
    };
    let bodies: Vec<Vec<u8>> = (0..records)
        .collect::<Vec<_>>()
        .chunks(500)
        .map(|ids| {
            render(
                Format::Native,
                &Batch::new(ids.iter().map(|i| record(*i, customers, period)).collect()),
                0,
            )
            .1
        })
        .collect();

    let started = Instant::now();
    let mut totals: BTreeMap<(String, i64, String, String), Tally> = BTreeMap::new();
    for body in &bodies {
        for r in parse_batch(body).expect("valid batch").records {
            let t = totals
                .entry((
                    r.customer.clone(),
                    r.period_start_ms,
                    r.meter.clone(),
                    r.model.clone(),
                ))
                .or_default();
            *t = t.plus(&tally_of(&r));
        }
    }
    let ingest_s = started.elapsed().as_secs_f64();

    let book = PriceBook::parse(include_str!("../../price_book.json")).expect("demo book");
    let account = Account::parse(r#"{"customer_id":"c0","country":"US"}"#, &book).expect("account");
    let rows: Vec<(String, String, Tally)> = totals
        .iter()
        .filter(|((c, ..), _)| c == "c0")
        .map(|((_, _, meter, model), t)| (meter.clone(), model.clone(), *t))
        .collect();
    let input = rating_input("pro", period, &rows, period.start_ms);
    let rounds = 2_000;
    let started = Instant::now();
    let mut total = rust_decimal::Decimal::ZERO;
    for _ in 0..rounds {
        total = rate(&book, &account, &input).expect("rates").total;
    }
    let rate_s = started.elapsed().as_secs_f64();
    println!(
        r#"{{"records":{records},"customers":{customers},"batches":{},"ingest_records_per_s":{:.0},"invoice_rate_us":{:.1},"invoices_per_s":{:.0},"c0_total":"{total}"}}"#,
        bodies.len(),
        records as f64 / ingest_s,
        rate_s / rounds as f64 * 1e6,
        rounds as f64 / rate_s
    );
}
