//! Counters, customers and keys live in Durable Object storage (SQLite): they survive a
//! restart of the runtime.

mod support;

use serde_json::json;
use support::upstream::FakeUpstream;
use support::wrangler::{scratch, Worker};
use support::{catalog, chat, customer, meter, settled_usage};

#[test]
fn usage_and_keys_survive_a_restart() {
    let upstream = FakeUpstream::start(0);
    let dir = scratch("restart");
    let ask = json!({"model": "gpt-4o-mini", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});

    let worker = Worker::start(&dir, &upstream.url(), &catalog());
    let (_, key) = customer(worker.port, "fifty");
    for _ in 0..3 {
        assert_eq!(chat(worker.port, &key, &ask, &[]).status, 200);
    }
    let before = settled_usage(worker.port, &key);
    worker.stop();

    let worker = Worker::start(&dir, &upstream.url(), &catalog());
    let after = settled_usage(worker.port, &key);
    assert_eq!(after["meters"], before["meters"]);
    // The stopped isolate's lease may still hold its unused share (at most an eighth of
    // the 50) until its grace ends: the documented hold of a dead isolate.
    let remaining = after["remaining"]["requests"].as_u64().unwrap();
    assert!((47 - 50 / 8..=47).contains(&remaining), "{after}");
    assert_eq!(chat(worker.port, &key, &ask, &[]).status, 200);
    let usage = settled_usage(worker.port, &key);
    assert_eq!(
        meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        4
    );
    worker.stop();
}
