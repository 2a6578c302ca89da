//! Quota leases across isolates: 500 concurrent requests spread over 4 stateless
//! isolates (one workerd, each front service its own isolate, all bound to the same
//! counter objects) against a hard quota of about 50 requests' worth, for requests,
//! tokens and spend. Never more than the quota is admitted, and once the leases have
//! come back the quota is used exactly: the next request is refused because nothing is
//! left, not because an idle isolate still holds some.

mod support;

use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::upstream::FakeUpstream;
use support::workerd::Workerd;
use support::{admin, call, customer, metrics, settled_usage};

const BURST: usize = 500;

fn catalog() -> String {
    let mut c: Value = serde_json::from_str(&support::catalog()).unwrap();
    c["plans"]["tokens50"] =
        json!({"included_tokens": 5000, "token_cap": "hard", "default_max_output_tokens": 40});
    c["plans"]["spend50"] = json!({"spend_cap": "0.0015", "default_max_output_tokens": 40});
    c.to_string()
}

fn body() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 40,
        "messages": [{"role": "user", "content": "a prompt of at least twenty-one bytes"}]})
}

/// `BURST` requests at once, spread over the isolates; how many were admitted.
fn burst(fronts: &[u16], key: &str) -> usize {
    let started = Instant::now();
    let body = body();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..BURST)
            .map(|i| {
                let (port, body) = (fronts[i % fronts.len()], &body);
                s.spawn(move || call(port, key, "/v1/chat/completions", body, &[]).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "bounded burst"
    );
    let odd: Vec<_> = statuses
        .iter()
        .filter(|s| **s != 200 && **s != 429)
        .collect();
    assert!(odd.is_empty(), "only 200 or 429: {odd:?}");
    statuses.iter().filter(|s| **s == 200).count()
}

/// After the leases' windows end and their holders return them: requests one at a
/// time, round the isolates, until one is refused. Returns (admitted, the refusal).
fn top_up(fronts: &[u16], key: &str) -> (usize, Value) {
    std::thread::sleep(Duration::from_millis(2_500));
    for i in 0..200 {
        let r = call(
            fronts[i % fronts.len()],
            key,
            "/v1/chat/completions",
            &body(),
            &[],
        );
        match r.status {
            200 => continue,
            429 => return (i, r.json()),
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    panic!("200 more requests admitted after the burst");
}

/// One workerd (an object host and 4 front isolates) and upstream for these tests.
fn shared() -> &'static Workerd {
    static W: OnceLock<(FakeUpstream, Workerd)> = OnceLock::new();
    let (_, w) = W.get_or_init(|| {
        let upstream = FakeUpstream::start(0);
        let w = Workerd::start(&upstream.url(), &catalog(), 4);
        (upstream, w)
    });
    w
}

/// The documented revocation bound: a key revoked through one isolate stops working
/// in every other isolate once its lease's window (`lease::LEASE_MS`, 2 s) is over.
#[test]
fn a_revoked_key_stops_in_every_isolate_within_the_lease_window() {
    let w = shared();
    let (id, key) = customer(w.port, "open");
    for port in &w.fronts {
        let r = call(*port, &key, "/v1/chat/completions", &body(), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let keys = admin(
        w.port,
        "GET",
        &format!("/admin/v1/customers/{id}/keys"),
        &Value::Null,
    );
    let key_id = keys.json()[0]["id"].as_str().unwrap().to_string();
    let path = format!("/admin/v1/customers/{id}/keys/{key_id}");
    assert_eq!(admin(w.port, "DELETE", &path, &Value::Null).status, 200);
    std::thread::sleep(Duration::from_millis(2_000 + 500));
    for port in &w.fronts {
        let r = call(*port, &key, "/v1/chat/completions", &body(), &[]);
        assert_eq!(r.status, 401, "past the bound on {port}: {}", r.text());
        assert!(r.text().contains("revoked"));
    }
}

#[test]
fn leases_admit_exactly_the_quota_across_four_isolates() {
    let w = shared();

    // Requests: exactly 50.
    let leased = || -> u64 {
        let m = w
            .fronts
            .iter()
            .map(|p| metrics(*p)["leased_admissions"].as_u64().unwrap());
        m.sum()
    };
    let before = leased();
    let (_, key) = customer(w.port, "fifty");
    let admitted = burst(&w.fronts, &key);
    assert!(leased() > before, "some were admitted under leases");
    assert!(admitted <= 50, "{admitted} admitted of 50");
    let (more, _) = top_up(&w.fronts, &key);
    let usage = settled_usage(w.port, &key);
    assert_eq!(
        admitted + more,
        50,
        "{admitted} in the burst, {more} after: {usage}"
    );
    assert_eq!(usage["totals"]["requests"], 50);
    assert_eq!(usage["remaining"]["requests"], 0);

    // Tokens: within the quota, and what is left is less than one more request needs.
    let (_, key) = customer(w.port, "tokens50");
    let admitted = burst(&w.fronts, &key);
    let (more, refusal) = top_up(&w.fronts, &key);
    let usage = settled_usage(w.port, &key);
    let used = usage["totals"]["tokens"].as_u64().unwrap();
    let left = usage["remaining"]["included_tokens"].as_u64().unwrap();
    let msg = refusal["error"]["message"].as_str().unwrap().to_string();
    let needs: u64 = msg
        .split("needs up to ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    assert!(
        admitted > 0 && used <= 5_000,
        "{admitted}+{more} admitted, {used} tokens"
    );
    assert_eq!(left, 5_000 - used, "nothing still held: {usage}");
    assert!(left < needs, "refused with {left} left, needing {needs}");

    // Spend: within the cap, and what is left is less than one more request's bound.
    let (_, key) = customer(w.port, "spend50");
    let admitted = burst(&w.fronts, &key);
    let (more, _) = top_up(&w.fronts, &key);
    let usage = settled_usage(w.port, &key);
    let num = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    let (cost, left) = (
        num(&usage["totals"]["cost"]),
        num(&usage["remaining"]["spend"]),
    );
    assert!(
        admitted > 0 && cost <= 0.0015 + 1e-12,
        "{admitted}+{more}: {usage}"
    );
    assert!(
        (left - (0.0015 - cost)).abs() < 1e-12,
        "nothing still held: {usage}"
    );
    let bound = (40.0 * 0.60 + 200.0 * 0.15) / 1e6; // the input bound is at most 200 tokens
    assert!(left < bound, "refused with {left} left: {usage}");
}
