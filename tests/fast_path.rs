//! The entry's common case (`src/entry.mjs`, `edge::fast`): a non-streamed request
//! admitted under the isolate's lease. Each case below first makes sure it took that
//! path (the Worker's `fast_path` count moves), then that it answers exactly as the
//! fetch handler does: the same errors, nothing billed for a refusal, the bound for an
//! answer that cannot be read, and usage settled once.

mod support;

use serde_json::{json, Value};
use support::upstream::FakeUpstream;
use support::wrangler::{self, Worker};
use support::{call, catalog, chat, customer, meter, metrics, settled_usage};

/// A small response cap, so one padded answer passes it.
const MAX_RESPONSE: usize = 4096;

fn ask(max_tokens: u64) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

fn fast_count(port: u16) -> u64 {
    metrics(port)["fast_path"]
        .as_u64()
        .expect("a fast_path count")
}

/// Runs `send` and returns its answer, asserting whether the common case took it.
fn taken(port: u16, fast: bool, send: impl FnOnce() -> support::http::Resp) -> support::http::Resp {
    let before = fast_count(port);
    let r = send();
    let moved = fast_count(port) - before;
    assert_eq!(
        moved,
        u64::from(fast),
        "fast path taken {moved} times: {} {}",
        r.text(),
        metrics(port)
    );
    r
}

#[test]
fn the_common_case_answers_and_meters_as_the_fetch_handler_does() {
    let upstream = FakeUpstream::start(0);
    let dir = wrangler::scratch("fast");
    let cap = MAX_RESPONSE.to_string();
    let vars = [("MAX_RESPONSE_BYTES", cap.as_str())];
    let worker = Worker::start_with(&dir, &upstream.url(), &catalog(), &vars);
    let port = worker.port;
    let (_, key) = customer(port, "open");

    // The first request has no lease yet: the fetch handler asks the counter for one.
    let slow = taken(port, false, || chat(port, &key, &ask(3), &[]));
    assert_eq!(slow.status, 200, "{}", slow.text());
    let fast = taken(port, true, || chat(port, &key, &ask(3), &[]));
    assert_eq!(fast.status, 200, "{}", fast.text());
    assert_eq!(fast.json()["usage"], slow.json()["usage"]);
    for name in [
        "x-edgemeter-cost",
        "x-edgemeter-cost-basis",
        "x-ratelimit-limit-requests",
    ] {
        assert_eq!(fast.header(name), slow.header(name), "{name}");
    }
    assert_eq!(fast.header("x-edgemeter-cost-basis"), Some("actual"));
    assert_eq!(fast.header("content-type"), Some("application/json"));

    // An answer sent chunked, with no length, is read whole.
    let r = taken(port, true, || {
        chat(port, &key, &ask(4), &[("x-fake-chunked", "1")])
    });
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 4, "{}", r.text());

    // Refusals by the provider cost nothing; its words about the account do not pass.
    let r = taken(port, true, || {
        chat(port, &key, &ask(3), &[("x-fake-status", "400")])
    });
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "temperature", "{}", r.text());
    assert!(!r.text().contains("proj_operator123"), "{}", r.text());
    let r = taken(port, true, || {
        chat(port, &key, &ask(3), &[("x-fake-status", "500")])
    });
    assert_eq!(r.status, 502, "{}", r.text());
    let r = taken(port, true, || {
        chat(port, &key, &ask(3), &[("x-fake-redirect", "1")])
    });
    assert_eq!(r.status, 502, "{}", r.text());
    let paths = upstream.paths();
    assert!(!paths.iter().any(|p| p.contains("redirected")), "{paths:?}");
    // Unreachable (the Anthropic upstream is a closed port): nothing was done.
    let msg = json!({"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let r = taken(port, true, || call(port, &key, "/v1/messages", &msg, &[]));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("could not be reached"), "{}", r.text());

    // An answer past the cap: the provider did the work, so its bound is billed.
    let big = (2 * MAX_RESPONSE).to_string();
    let r = taken(port, true, || {
        chat(port, &key, &ask(5), &[("x-fake-size", &big)])
    });
    assert_eq!(r.status, 502, "{}", r.text());
    let r = taken(port, true, || {
        chat(
            port,
            &key,
            &ask(5),
            &[("x-fake-size", &big), ("x-fake-chunked", "1")],
        )
    });
    assert_eq!(r.status, 502, "{}", r.text());

    // An answer that breaks off: the provider did the work, so its bound is billed.
    let r = taken(port, true, || {
        chat(port, &key, &ask(5), &[("x-fake-break", "1")])
    });
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("broke off"), "{}", r.text());

    // A stream is metered as it passes, and settled when it ends; one the provider
    // refuses costs nothing.
    let stream = json!({"model": "gpt-4o-mini", "max_tokens": 2, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = taken(port, true, || chat(port, &key, &stream, &[]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/event-stream"));
    assert!(r.text().contains("data: [DONE]"), "{}", r.text());
    assert_eq!(r.header("x-edgemeter-cost-basis"), Some("reserved"));
    let r = taken(port, true, || {
        chat(port, &key, &stream, &[("x-fake-status", "500")])
    });
    assert_eq!(r.status, 502, "{}", r.text());

    // Idempotency keys and bad input go to the fetch handler.
    let r = taken(port, false, || {
        chat(port, &key, &ask(2), &[("idempotency-key", "k-1")])
    });
    assert_eq!(r.status, 200, "{}", r.text());
    let r = taken(port, false, || {
        chat(port, &key, &json!({"model": "nope", "messages": []}), &[])
    });
    assert_eq!(r.status, 400, "{}", r.text());

    // Settled once each: three answered (3, 3 and 4 tokens), the two capped answers and
    // the broken one at their bound (5 each), the stream (2) and the idempotent request
    // (2).
    let usage = settled_usage(port, &key);
    let row = meter(&usage, "chat.completions", "gpt-4o-mini");
    assert_eq!(row["requests"], 8, "{usage}");
    assert_eq!(row["output"], 3 + 3 + 4 + 5 + 5 + 5 + 2 + 2, "{usage}");
    assert_eq!(row["estimated"], 3, "{usage}");
    // Nothing else: the refused and unreachable requests cost nothing.
    assert_eq!(usage["totals"]["requests"], 8, "{usage}");
    worker.stop();
}

/// A provider key holding a character no header may carry (a carriage return pasted
/// with it): the runtime refuses the header as the request is built. Both paths answer 502 in
/// OpenAI's shape, name neither the key nor its value, bill nothing and hold nothing.
#[test]
fn a_provider_key_no_header_can_carry_is_a_502_that_costs_nothing() {
    let upstream = FakeUpstream::start(0);
    let dir = wrangler::scratch("fast-bad-key");
    let url = upstream.url();
    let vars = [
        ("ANTHROPIC_UPSTREAM_URL", url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-\rsecret"),
    ];
    let worker = Worker::start_with(&dir, &url, &catalog(), &vars);
    let port = worker.port;
    let (_, key) = customer(port, "open");
    let msg = json!({"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    // The first request has no lease yet (the fetch handler's path); the second has.
    for fast in [false, true] {
        let r = taken(port, fast, || call(port, &key, "/v1/messages", &msg, &[]));
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.error_type(), "api_error", "{}", r.text());
        assert!(!r.text().contains("sk-ant"), "{}", r.text());
    }
    assert!(upstream.paths().is_empty(), "{:?}", upstream.paths());
    // Settled (nothing in flight) and nothing billed.
    let usage = settled_usage(port, &key);
    assert_eq!(usage["totals"]["requests"], 0, "{usage}");
    worker.stop();
}
