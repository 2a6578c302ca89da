//! Usage is never lost: streams whose clients leave are metered by what the provider
//! reported, or billed their reservation when that never comes within the drain
//! budget; a 20-minute stream (on the test clock) is billed for all its output; a
//! settlement that fails is retried and lands in the period its request belongs to;
//! so is a lease report that fails.

mod support;

use serde_json::{json, Value};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use support::receiver::Receiver;
use support::upstream::FakeUpstream;
use support::wrangler::{self, Worker};
use support::{admin, chat, customer, http, meter, metrics, settled_usage};

struct Env {
    _upstream: FakeUpstream,
    receiver: Receiver,
    worker: Worker,
}

/// A worker of its own: the test clock and injected faults are the isolate's. Its
/// counters push every change to a receiver, so records show where usage landed.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let upstream = FakeUpstream::start(0);
        let receiver = Receiver::start("whsec_no_usage_lost");
        let url = receiver.url();
        let vars = [
            ("TEST_CLOCK", "on"),
            ("ABORT_DRAIN_MS", "3000"),
            ("RATING_URL", url.as_str()),
            ("RATING_SECRET", "whsec_no_usage_lost"),
            ("FLUSH_SHARDS", "1"),
            ("FLUSH_PUSH_MS", "0"),
            ("FLUSH_BACKOFF_MS", "0"),
        ];
        let dir = wrangler::scratch("no-usage-lost");
        let worker = Worker::start_with(&dir, &upstream.url(), &support::catalog(), &vars);
        Env {
            _upstream: upstream,
            receiver,
            worker,
        }
    })
}

/// Tests that move the clock far, or inject faults, run alone; the others share it.
static CLOCK: RwLock<()> = RwLock::new(());

fn shared_clock() -> RwLockReadGuard<'static, ()> {
    CLOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn own_clock() -> RwLockWriteGuard<'static, ()> {
    CLOCK.write().unwrap_or_else(|e| e.into_inner())
}

fn ask(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say something"}]})
}

/// Runs the cron once; the records the receiver has of customer `id`.
fn delivered(env: &Env, id: &str) -> Vec<Value> {
    let port = env.worker.port;
    let cron = http::request(port, "GET", "/__scheduled?cron=*+*+*+*+*", &[], b"");
    assert!(cron.status < 300, "{}", cron.text());
    let records = env.receiver.records().into_iter();
    records.filter(|r| r["customer"] == id).collect()
}

fn advance(port: u16, ms: i64) -> i64 {
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/clock",
        &json!({"advance_ms": ms}),
    );
    assert_eq!(r.status, 200, "advance: {}", r.text());
    r.json()["now_ms"].as_i64().unwrap()
}

fn row(port: u16, key: &str) -> (u64, u64, u64) {
    let usage = settled_usage(port, key);
    let row = meter(&usage, "chat.completions", "gpt-4o-mini");
    let n = |f: &str| row[f].as_u64().unwrap_or(0);
    (n("requests"), n("output"), n("estimated"))
}

/// Starts a stream and reads it until `until` appears, then hangs up.
fn leave_stream_at(port: u16, key: &str, body: &Value, delay_ms: &str, until: &str) -> String {
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-fake-delay-ms", delay_ms),
    ];
    let path = "/v1/chat/completions";
    http::read_then_hang_up(port, path, &headers, body.to_string().as_bytes(), until)
}

#[test]
fn a_client_that_leaves_before_the_usage_event_is_billed_what_the_provider_reported() {
    let _clock = shared_clock();
    let port = env().worker.port;
    let (_, key) = customer(port, "open");
    let got = leave_stream_at(port, &key, &ask(30, true), "40", "tok1 ");
    assert!(!got.contains("tok29 "), "the client left early: {got}");
    // The provider generated all 30 tokens and said so after the client left.
    assert_eq!(row(port, &key), (1, 30, 0));
}

#[test]
fn every_stream_aborted_at_a_random_point_is_metered() {
    let _clock = shared_clock();
    let port = env().worker.port;
    let (_, key) = customer(port, "open");
    let streams = 100;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let cut: Vec<u64> = (0..streams)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % 9 // leave after 0 to 8 of the 8 tokens (8: after the last)
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for batch in cut.chunks(10) {
            let key = &key;
            s.spawn(move || {
                for &at in batch {
                    let until = if at == 0 {
                        "data: ".to_string()
                    } else {
                        format!("tok{} ", at - 1)
                    };
                    leave_stream_at(port, key, &ask(8, true), "15", &until);
                }
            });
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "bounded load loop"
    );
    // All 100 metered, each at the provider's own count: none lost, none estimated.
    assert_eq!(row(port, &key), (streams as u64, 8 * streams as u64, 0));
    assert!(metrics(port)["streams_aborted"].as_u64().unwrap() >= 1);
}

#[test]
fn a_stream_whose_usage_never_comes_is_billed_its_reservation() {
    let _clock = shared_clock();
    let port = env().worker.port;
    let (_, key) = customer(port, "open");
    let before = metrics(port)["aborts_billed_at_bound"].as_u64().unwrap();
    // 12 tokens 1.5 s apart outlast the 3 s drain budget after the client leaves.
    let got = leave_stream_at(port, &key, &ask(12, true), "1500", "tok0 ");
    assert!(got.contains("tok0 "));
    let usage = settled_usage(port, &key);
    let r = meter(&usage, "chat.completions", "gpt-4o-mini");
    // the whole output cap, flagged estimated; the input at its bound, never zero
    assert_eq!(
        (r["requests"].as_u64(), r["output"].as_u64()),
        (Some(1), Some(12))
    );
    assert_eq!(r["estimated"], 1, "{usage}");
    assert!(r["input"].as_u64().unwrap() > 0, "{usage}");
    let after = metrics(port)["aborts_billed_at_bound"].as_u64().unwrap();
    assert!(after > before, "counted: {before} -> {after}");
    let flush = admin(port, "GET", "/admin/v1/flush", &Value::Null).json();
    let counted = flush["loss_windows"]["aborts_billed_at_bound"].as_u64();
    assert!(counted >= Some(after), "{flush}");
}

#[test]
fn a_twenty_minute_stream_is_billed_for_all_its_output() {
    let _clock = own_clock();
    let port = env().worker.port;
    let (_, key) = customer(port, "open");
    let streaming = key.clone();
    let long = std::thread::spawn(move || {
        let auth = format!("Bearer {streaming}");
        let headers = [("authorization", auth.as_str()), ("x-fake-delay-ms", "150")];
        let body = ask(40, true).to_string();
        let r = http::request(
            port,
            "POST",
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        );
        r
    });
    std::thread::sleep(Duration::from_millis(800));
    // Four jumps of five minutes while the stream runs; after each, another request of
    // the same customer is admitted, and admission expires what is past its deadline.
    for _ in 0..4 {
        advance(port, 5 * 60_000);
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(chat(port, &key, &ask(1, false), &[]).status, 200);
    }
    // Twenty minutes on, the stream is still running and still holds its reservation.
    let auth = format!("Bearer {key}");
    let now = http::request(port, "GET", "/v1/usage", &[("authorization", &auth)], b"");
    assert_eq!(now.json()["totals"]["in_flight"], 1, "{}", now.text());
    let r = long.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("tok39 "),
        "the whole stream arrived: {}",
        r.text()
    );
    // Billed for all 40 tokens the provider reported (and 1 for each other request),
    // not expired at an estimate.
    assert_eq!(row(port, &key), (5, 44, 0));
}

#[test]
fn a_killed_settlement_is_retried_and_lands_in_its_requests_period() {
    let _clock = own_clock();
    let env = env();
    let port = env.worker.port;
    // A plan too tight to lease, so the request settles on its own.
    let (id, key) = customer(port, "solo");
    let admitted_at = advance(port, 0);
    // The first two settlement tries are dropped; the third comes after the period
    // ended (the clock moves 32 days, past any month's end, before it).
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/faults",
        &json!({"drop_settles": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chat(port, &key, &ask(7, false), &[]).status, 200);
    let now = advance(port, 32 * 86_400_000);
    let usage = settled_usage(port, &key);
    assert_eq!(
        meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        0,
        "{usage}"
    );
    assert!(metrics(port)["settle_retries"].as_u64().unwrap() >= 2);
    // The receiver gets it in the old period, with that period's final record.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mine = delivered(env, &id);
        let sum = |f: &str| mine.iter().map(|r| r[f].as_u64().unwrap_or(0)).sum::<u64>();
        if mine.iter().any(|r| r["final"] == true) {
            assert_eq!((sum("requests"), sum("output_tokens")), (1, 7), "{mine:?}");
            for r in &mine {
                let (start, end) = (
                    r["period_start_ms"].as_i64().unwrap(),
                    r["period_end_ms"].as_i64().unwrap(),
                );
                assert!(
                    start <= admitted_at && admitted_at < end && end <= now,
                    "{r}"
                );
            }
            break;
        }
        let flush = support::counter_flush(port, &id);
        let all = env.receiver.records().len();
        assert!(
            Instant::now() < deadline,
            "no final record: {mine:?} {flush} of {all}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A customer's last lease report has no later request to carry it: when it fails, the
/// isolate tries again (`lease::REPORT_BACKOFF_MS`), not only when its customer comes
/// back. The first three tries are dropped: with no retry, the batch's own and the
/// window end's would be all. Nothing asks the counter meanwhile (any call to it
/// would carry the report): the record is awaited at the receiver.
#[test]
fn a_failed_lease_report_is_sent_again_with_no_other_request() {
    // Alone: the dropped tries are the isolate's, and another test's would use them.
    let _clock = own_clock();
    let env = env();
    let port = env.worker.port;
    let (id, key) = customer(port, "open");
    let before = metrics(port);
    let r = admin(
        port,
        "POST",
        "/admin/v1/test/faults",
        &json!({"drop_reports": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(chat(port, &key, &ask(7, false), &[]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    let sum = loop {
        std::thread::sleep(Duration::from_millis(500));
        let mine = delivered(env, &id);
        let sum = |f: &str| mine.iter().map(|r| r[f].as_u64().unwrap_or(0)).sum::<u64>();
        if sum("requests") > 0 || Instant::now() > deadline {
            break (sum("requests"), sum("output_tokens"));
        }
    };
    assert_eq!(sum, (1, 7), "the request's usage reached the receiver");
    let after = metrics(port);
    let grew = |m: &str| after[m].as_u64().unwrap() - before[m].as_u64().unwrap();
    assert!(
        grew("leased_admissions") >= 1,
        "admitted under a lease: {after}"
    );
    assert!(
        grew("lease_report_failures") >= 1,
        "a report failed: {after}"
    );
}
