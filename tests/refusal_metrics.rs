//! The worker's metrics count what it refused and cut off: forged keys, bodies and
//! answers over their caps, unknown routes. One worker of its own, so no other test's
//! requests move its counters.

mod support;

use serde_json::{json, Value};
use support::http::request_chunked;
use support::upstream::FakeUpstream;
use support::wrangler::{self, Worker};
use support::{call, catalog, chat, customer, metrics};

fn ask() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
}

fn grew(before: &Value, after: &Value, field: &str) -> u64 {
    let get = |m: &Value| {
        m[field]
            .as_u64()
            .unwrap_or_else(|| panic!("metrics lack {field}: {m}"))
    };
    get(after) - get(before)
}

/// One test for everything that reads this worker's metrics, so no other request
/// moves its counters in between.
#[test]
fn refusals_and_caps_are_counted_in_the_metrics() {
    let upstream = FakeUpstream::start(0);
    let vars = [("MAX_RESPONSE_BYTES", "1048576")];
    let dir = wrangler::scratch("surface-metrics");
    let worker = Worker::start_with(&dir, &upstream.url(), &catalog(), &vars);
    let port = worker.port;
    let (id, key) = customer(port, "open");

    // forged keys are refused before any counter is called
    let m0 = metrics(port);
    let zeros = format!("em_live_{id}_{}", "0".repeat(64));
    let old_shape = format!("em_live_{id}_{}", "0123456789abcdef".repeat(2));
    for forged in [zeros, old_shape] {
        let r = chat(port, &forged, &ask(), &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "invalid_api_key")
        );
    }
    let m1 = metrics(port);
    assert_eq!(grew(&m0, &m1, "counter_calls"), 0, "{m0} -> {m1}");
    assert_eq!(grew(&m0, &m1, "forged_keys"), 2, "{m0} -> {m1}");

    // a chunked body is cut off at the cap while it arrives
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let filler = vec![b'x'; 8192];
    let mut pieces: Vec<&[u8]> =
        vec![br#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ""#];
    pieces.extend(std::iter::repeat_n(filler.as_slice(), 12));
    pieces.push(br#""}]}"#);
    let r = request_chunked(port, "/v1/chat/completions", &headers, &pieces);
    assert_eq!(r.status, 413, "{}", r.text());
    let m2 = metrics(port);
    assert_eq!(grew(&m1, &m2, "body_cap_hits"), 1, "{m1} -> {m2}");

    // an upstream answer over MAX_RESPONSE_BYTES is refused; one under it passes
    let r = chat(port, &key, &ask(), &[("x-fake-size", "2000000")]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "upstream_too_large")
    );
    let m3 = metrics(port);
    assert_eq!(grew(&m2, &m3, "response_cap_hits"), 1, "{m2} -> {m3}");
    let r = chat(port, &key, &ask(), &[("x-fake-size", "500000")]);
    assert_eq!(r.status, 200);
    assert!(r.body.len() >= 500_000);
    let m4 = metrics(port);
    assert_eq!(grew(&m3, &m4, "response_cap_hits"), 0, "{m3} -> {m4}");

    let r = call(port, &key, "/v1/batches", &json!({}), &[]);
    assert_eq!(r.status, 404);
    let m5 = metrics(port);
    assert_eq!(grew(&m4, &m5, "refused_routes"), 1, "{m4} -> {m5}");
    assert!(upstream.paths().iter().all(|p| p == "/v1/chat/completions"));
    worker.stop();
}
