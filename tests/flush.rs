//! Cron flush through the real worker: at-least-once delivery to a receiver that fails,
//! times out, or dies with the worker between send and acknowledgement, and still the
//! receiver's deduplicated totals equal the counters' totals exactly.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::http::request;
use support::receiver::{Mode, Receiver};
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{admin, call, catalog, chat, customer, push_now, settled_usage, wait_pushed};

const SECRET: &str = "whsec_flush_test";

type Totals = BTreeMap<(String, String, String), [u64; 4]>;

fn start(dir: &std::path::Path, upstream: &FakeUpstream, receiver: &Receiver) -> Worker {
    // Counters push right after each change.
    start_pushing_every(dir, upstream, receiver, "0")
}

fn start_pushing_every(
    dir: &std::path::Path,
    upstream: &FakeUpstream,
    receiver: &Receiver,
    push_ms: &str,
) -> Worker {
    let url = receiver.url();
    let vars = [
        ("RATING_URL", url.as_str()),
        ("RATING_SECRET", SECRET),
        ("FLUSH_SHARDS", "3"),
        ("FLUSH_BATCH_RECORDS", "4"),
        ("FLUSH_BACKOFF_MS", "0"),
        ("FLUSH_TIMEOUT_MS", "1500"),
        ("FLUSH_PUSH_MS", push_ms),
    ];
    Worker::start_with(dir, &upstream.url(), &catalog(), &vars)
}

fn cron(port: u16) {
    let r = request(port, "GET", "/__scheduled?cron=*+*+*+*+*", &[], b"");
    assert!(r.status < 300, "scheduled: {} {}", r.status, r.text());
}

/// What the counters say, per (customer, meter, model).
fn counter_totals(port: u16, keys: &[(String, String)]) -> Totals {
    let mut out = Totals::new();
    for (id, key) in keys {
        let usage = settled_usage(port, key);
        for m in usage["meters"].as_array().unwrap() {
            let n = |f: &str| m[f].as_u64().unwrap();
            let k = (
                id.clone(),
                m["meter"].as_str().unwrap().to_string(),
                m["model"].as_str().unwrap().to_string(),
            );
            out.insert(k, [n("requests"), n("input"), n("output"), n("cached")]);
        }
    }
    out
}

/// Runs the cron until the receiver's totals match the counters' (at most 40 runs).
fn flush_until_exact(port: u16, receiver: &Receiver, keys: &[(String, String)]) -> Totals {
    let expected = counter_totals(port, keys);
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..40 {
        cron(port);
        if receiver.totals() == expected {
            return expected;
        }
        assert!(Instant::now() < deadline, "flush did not converge");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "after 40 runs the receiver has\n{:?}\nbut the counters\n{expected:?}\nstats: {}",
        receiver.totals(),
        flush_stats(port)
    );
}

/// Asks each counter to push now and checks it learned that everything was
/// acknowledged: nothing in flight, the watermark at the last change.
fn assert_counters_acknowledged(port: u16, keys: &[(String, String)]) {
    for (id, _) in keys {
        let f = push_now(port, id);
        assert_eq!(f["in_flight"], 0, "{id}: {f}");
        assert_eq!(f["flushed_seq"], f["seq"], "{id}: {f}");
    }
}

fn flush_stats(port: u16) -> Value {
    admin(port, "GET", "/admin/v1/flush", &Value::Null).json()
}

fn drive_usage(port: u16, customers: usize) -> Vec<(String, String)> {
    let keys: Vec<_> = (0..customers).map(|_| customer(port, "open")).collect();
    for (i, (_, key)) in keys.iter().enumerate() {
        for n in 0..(i % 3 + 1) as u64 {
            let body = json!({"model": "gpt-4o-mini", "max_tokens": n + 1, "stream": n == 1, "messages": []});
            assert_eq!(chat(port, key, &body, &[]).status, 200);
        }
        if i % 2 == 0 {
            let emb = json!({"model": "text-embedding-3-small", "input": "x"});
            assert_eq!(call(port, key, "/v1/embeddings", &emb, &[]).status, 200);
        }
    }
    keys
}

#[test]
fn totals_are_exact_through_failures_and_timeouts() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let worker = start(&scratch("flush-exact"), &upstream, &receiver);
    let port = worker.port;
    receiver.set_mode(Mode::FailEveryOther);
    let keys = drive_usage(port, 12);
    flush_until_exact(port, &receiver, &keys);

    // More usage, and now the receiver answers after the worker gave up waiting: every
    // batch is sent again, and the duplicates change nothing.
    receiver.set_mode(Mode::Slow(2_000));
    for (_, key) in keys.iter().take(5) {
        chat(
            port,
            key,
            &json!({"model": "gpt-4o-mini", "max_tokens": 9, "messages": []}),
            &[],
        );
    }
    // In the shards before the runs (leased usage reaches its counter in a batch, up
    // to `REPORT_MS` later), so the runs have batches to time out on.
    wait_pushed(port, &keys[..5]);
    for _ in 0..2 {
        cron(port);
    }
    receiver.set_mode(Mode::Ok);
    let exact = flush_until_exact(port, &receiver, &keys);
    assert!(
        receiver.state.lock().unwrap().duplicates > 0,
        "the timed-out batches were resent"
    );
    // Once clean, further runs send nothing new.
    let sent = receiver.state.lock().unwrap().requests;
    cron(port);
    cron(port);
    assert_eq!(receiver.totals(), exact);
    assert_eq!(receiver.state.lock().unwrap().requests, sent);
    let stats = flush_stats(port);
    assert_eq!(stats["overall"]["pending_customers"], 0, "{stats}");
    assert_eq!(stats["overall"]["pending_records"], 0, "{stats}");
    assert!(stats["overall"]["last_run_ms"].as_i64().is_some());
    assert_counters_acknowledged(port, &keys);
    // Learning of the acknowledgement sends nothing again.
    cron(port);
    assert_eq!(receiver.state.lock().unwrap().requests, sent);
    worker.stop();
}

#[test]
fn restart_between_send_and_acknowledgement_loses_and_doubles_nothing() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let dir = scratch("flush-restart");
    let worker = start(&dir, &upstream, &receiver);
    let keys = drive_usage(worker.port, 5);
    let expected = counter_totals(worker.port, &keys);
    wait_pushed(worker.port, &keys);
    receiver.set_mode(Mode::Hold);
    let port = worker.port;
    let trigger =
        std::thread::spawn(move || request(port, "GET", "/__scheduled?cron=*+*+*+*+*", &[], b""));
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.state.lock().unwrap().records.is_empty() {
        assert!(Instant::now() < deadline, "no batch arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.stop(); // the receiver has records; the worker never hears its answer
    let _ = trigger.join();
    receiver.set_mode(Mode::Ok);

    let worker = start(&dir, &upstream, &receiver);
    assert_eq!(
        counter_totals(worker.port, &keys),
        expected,
        "counters survive the restart"
    );
    flush_until_exact(worker.port, &receiver, &keys);
    assert!(
        receiver.state.lock().unwrap().duplicates > 0,
        "the unacknowledged batch was sent again"
    );
    worker.stop();
}

#[test]
fn closing_a_period_sends_final_records_and_starts_at_zero() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let worker = start(&scratch("flush-period"), &upstream, &receiver);
    let port = worker.port;
    let (id, key) = customer(port, "fifty");
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": []});
    for _ in 0..3 {
        assert_eq!(chat(port, &key, &ask, &[]).status, 200);
    }
    let keys = vec![(id.clone(), key.clone())];
    flush_until_exact(port, &receiver, &keys);
    let old_start = receiver.records()[0]["period_start_ms"].as_i64().unwrap();

    let r = admin(
        port,
        "POST",
        &format!("/admin/v1/customers/{id}/close-period"),
        &Value::Null,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = settled_usage(port, &key);
    assert_eq!(
        usage["totals"]["requests"], 0,
        "the new period starts at zero: {usage}"
    );
    assert_eq!(usage["remaining"]["requests"], 50);
    assert_eq!(chat(port, &key, &ask, &[]).status, 200);

    let deadline = Instant::now() + Duration::from_secs(60);
    let is_final = |r: &Value| r["final"] == true && r["period_start_ms"] == old_start;
    while !receiver.records().iter().any(is_final)
        || receiver
            .records()
            .iter()
            .all(|r| r["period_start_ms"] == old_start)
    {
        assert!(
            Instant::now() < deadline,
            "no final record: {:?}",
            receiver.records()
        );
        cron(port);
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = receiver.records();
    let old: u64 = records
        .iter()
        .filter(|r| r["period_start_ms"] == old_start)
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    let new: Vec<&Value> = records
        .iter()
        .filter(|r| r["period_start_ms"] != old_start)
        .collect();
    assert_eq!(old, 3, "the closed period keeps its 3 requests");
    assert_eq!(
        new.iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum::<u64>(),
        1
    );
    assert!(new.iter().all(|r| r["final"] == false));
    worker.stop();
}

#[test]
fn batches_refused_for_a_bad_signature_are_kept_and_can_be_requeued() {
    let (upstream, receiver) = (
        FakeUpstream::start(0),
        Receiver::start("a-different-secret"),
    );
    let worker = start(&scratch("flush-dead"), &upstream, &receiver);
    let port = worker.port;
    let keys = drive_usage(port, 4);
    let expected = counter_totals(port, &keys);
    wait_pushed(port, &keys);
    for _ in 0..3 {
        cron(port);
    }
    let stats = flush_stats(port);
    assert!(
        stats["overall"]["dead_letters"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["overall"]["pending_records"], 0, "{stats}");
    assert!(receiver.totals().is_empty());
    assert!(receiver.state.lock().unwrap().bad_signatures > 0);
    // Refused records are not acknowledged: each counter still has them in flight, and
    // asking its shard again does not change that.
    for (id, _) in &keys {
        let f = push_now(port, id);
        assert!(f["in_flight"].as_u64().unwrap() > 0, "{id}: {f}");
        assert_eq!(f["flushed_seq"], 0, "{id}: {f}");
    }

    receiver.set_secret(SECRET);
    let r = admin(port, "POST", "/admin/v1/flush/requeue", &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(receiver.totals(), expected);
    assert_eq!(flush_stats(port)["overall"]["dead_letters"], 0);
    assert_counters_acknowledged(port, &keys);
    worker.stop();
}

#[test]
fn changes_within_the_push_interval_travel_together_on_the_alarm() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let worker = start_pushing_every(&scratch("flush-alarm"), &upstream, &receiver, "2000");
    let port = worker.port;
    // One settlement per request (a plan too tight to lease): leased requests would
    // arrive in batched reports, which this timing does not describe.
    let (id, key) = customer(port, "solo");
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": []});
    for _ in 0..4 {
        assert_eq!(chat(port, &key, &ask, &[]).status, 200);
    }
    settled_usage(port, &key);
    // The first change pushed at once; the other three wait for the alarm.
    let f = support::counter_flush(port, &id);
    assert!(
        f["seq"].as_u64().unwrap() > f["pushed_seq"].as_u64().unwrap(),
        "{f}"
    );
    assert!(f["alarm_ms"].is_i64(), "{f}");
    let keys = vec![(id.clone(), key.clone())];
    wait_pushed(port, &keys);
    let exact = flush_until_exact(port, &receiver, &keys);
    assert_eq!(exact.values().map(|t| t[0]).sum::<u64>(), 4);
    // one record from the first push, one from the alarm's
    assert_eq!(receiver.records().len(), 2, "{:?}", receiver.records());
    worker.stop();
}

/// Damages one waiting record in the shards' storage, as a bad write or an
/// incompatible upgrade would; returns its id.
fn damage_one_waiting_row(dir: &std::path::Path) -> String {
    let shards = dir.join("state/v3/do/edgemeter-test-FlushShard");
    let script = r#"
import glob, sqlite3, sys
for path in sorted(glob.glob(sys.argv[1] + "/*.sqlite")):
    if path.endswith("metadata.sqlite"):
        continue
    db = sqlite3.connect(path)
    row = db.execute("SELECT id FROM outbox WHERE state = 0 LIMIT 1").fetchone()
    if row:
        db.execute("UPDATE outbox SET record = ? WHERE id = ?", ('{"id": "trunc', row[0]))
        db.commit()
        print(row[0])
        break
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &shards.display().to_string()])
        .output()
        .expect("python3");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !id.is_empty(),
        "no waiting row: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    id
}

#[test]
fn an_unreadable_outbox_row_becomes_a_dead_letter_and_the_rest_is_sent() {
    let (upstream, receiver) = (FakeUpstream::start(0), Receiver::start(SECRET));
    let dir = scratch("flush-unreadable");
    let worker = start(&dir, &upstream, &receiver);
    let keys = drive_usage(worker.port, 3);
    wait_pushed(worker.port, &keys);
    worker.stop();
    let damaged = damage_one_waiting_row(&dir);
    let worker = start(&dir, &upstream, &receiver);
    let port = worker.port;
    for _ in 0..3 {
        cron(port);
    }
    let stats = flush_stats(port);
    assert_eq!(stats["overall"]["dead_letters"], 1, "{stats}");
    assert_eq!(stats["overall"]["pending_records"], 0, "{stats}");
    let records = receiver.records();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["id"] != damaged.as_str()));
    // Requeueing leaves it where an operator can see it; it is never sent as is.
    let r = admin(port, "POST", "/admin/v1/flush/requeue", &Value::Null);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(flush_stats(port)["overall"]["dead_letters"], 1);
    worker.stop();
}
