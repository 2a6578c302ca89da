//! A stateless route the operator opts in through the catalog, at a fixed price per
//! request: it is forwarded with its listed fields only, metered as one request under
//! its name, and held to the plan's spend cap like any other usage. And the one route
//! that is not metered, the benchmark's pass-through, is off unless enabled.

mod support;

use serde_json::{json, Value};
use support::upstream::FakeUpstream;
use support::wrangler::{self, Worker};
use support::{call, catalog, customer, meter, settled_usage, shared};

#[test]
fn an_opted_in_route_is_metered_at_its_price_and_capped() {
    let mut cat: Value = serde_json::from_str(&catalog()).unwrap();
    cat["proxy"]["routes"] =
        json!({"moderations": {"per_request": "0.25", "fields": ["model", "input", "user"]}});
    cat["plans"]["half"] = json!({"spend_cap": "0.5"});
    let upstream = FakeUpstream::start(0);
    let dir = wrangler::scratch("optional-routes");
    let worker = Worker::start(&dir, &upstream.url(), &cat.to_string());
    let port = worker.port;
    let (_, key) = customer(port, "open");
    let ask = json!({"model": "omni-moderation-latest", "input": "hello", "user": "alice"});

    let r = call(port, &key, "/v1/moderations", &ask, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = upstream.all();
    let sent = seen
        .iter()
        .find(|s| s.path == "/v1/moderations")
        .expect("forwarded");
    assert_eq!(sent.json()["input"], "hello");
    assert_ne!(
        sent.json()["user"],
        "alice",
        "the identity is the customer's hash"
    );
    // a field the operator did not list is refused before the provider
    let r = call(
        port,
        &key,
        "/v1/moderations",
        &json!({"input": "x", "model": "m", "extra": 1}),
        &[],
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("extra"))
    );
    // a stateless route that was not opted in stays closed
    let r = call(
        port,
        &key,
        "/v1/images/generations",
        &json!({"prompt": "x"}),
        &[],
    );
    assert_eq!(r.status, 404);
    let row = meter(&settled_usage(port, &key), "requests", "moderations");
    assert_eq!(
        (row["requests"].as_u64(), row["cost"].as_str()),
        (Some(1), Some("0.25"))
    );

    // under a spend cap of 0.5, at most two requests at 0.25 are ever admitted
    let (_, capped) = customer(port, "half");
    let statuses: Vec<u16> = (0..4)
        .map(|_| call(port, &capped, "/v1/moderations", &ask, &[]).status)
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!((1..=2).contains(&admitted), "{statuses:?}");
    let row = meter(&settled_usage(port, &capped), "requests", "moderations");
    assert_eq!(row["requests"].as_u64(), Some(admitted));
    worker.stop();
}

#[test]
fn the_benchmarks_unmetered_route_is_off_unless_enabled() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let marker = support::unique("bare");
    let body = json!({"model": "gpt-4o-mini", "messages": [], "marker": marker});
    let r = call(port, &key, "/bare/v1/chat/completions", &body, &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    let seen = env.upstream.all();
    assert!(!seen.iter().any(|s| s.body.contains(&marker)), "forwarded");
}
