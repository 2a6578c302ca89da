//! No overshoot under a burst: 500 concurrent requests against each kind of hard quota,
//! with the request shapes that multiply or hide usage (`n`, `best_of`, images,
//! `previous_response_id`). The fake provider bills every request its worst case (each
//! choice to its cap, each image at its most, the previous conversation as input), and
//! the usage it reported for the admitted requests stays within the quota. Its prompt
//! count is fixed (21 tokens), so prompts here are at least that many bytes: no real
//! tokenizer makes more tokens than bytes.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{call, customer, settled_usage};

const BURST: usize = 500;

/// The Worker under plain `workerd` (`support::plain`: no dev proxy to fail under a
/// burst of new connections).
fn port() -> u16 {
    support::plain().workerd.port
}

/// Sends `BURST` copies of a request at once; returns how many were admitted. One
/// burst at a time: several at once would test the local runtime's limits instead.
fn burst(port: u16, key: &str, path: &str, body: &Value) -> usize {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..BURST)
            .map(|_| {
                s.spawn(move || {
                    let r = call(port, key, path, body, &[]);
                    (r.status, r.text())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        started.elapsed() < Duration::from_secs(180),
        "bounded burst"
    );
    let odd: Vec<&u16> = statuses
        .iter()
        .filter(|s| **s != 200 && **s != 429)
        .collect();
    let first_odd = answers.iter().find(|a| a.0 != 200 && a.0 != 429);
    assert!(
        odd.is_empty(),
        "only 200 or 429: {odd:?}, first {first_odd:?}"
    );
    statuses.iter().filter(|s| **s == 200).count()
}

/// What the provider reported for the customer's admitted requests: requests, tokens,
/// cost. None of it may be an estimate.
fn reported(port: u16, key: &str) -> (u64, u64, f64) {
    let usage = settled_usage(port, key);
    let meters = usage["meters"].as_array().cloned().unwrap_or_default();
    let sum = |f: &str| meters.iter().map(|m| m[f].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        sum("estimated"),
        0,
        "all from the provider's own usage: {usage}"
    );
    let cost: f64 = usage["totals"]["cost"].as_str().unwrap().parse().unwrap();
    (sum("requests"), sum("input") + sum("output"), cost)
}

/// The provider's tokens for the burst's admitted requests (and `before` earlier ones)
/// are within `quota`.
fn assert_within(port: u16, key: &str, admitted: usize, before: usize, quota: u64) {
    let (requests, tokens, _) = reported(port, key);
    assert_eq!(requests as usize, admitted + before);
    assert!(
        admitted > 0 && tokens <= quota,
        "{admitted} admitted, {tokens} tokens"
    );
}

fn chat(max_tokens: u64, extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn a_request_quota_holds_under_a_burst_of_multi_choice_requests() {
    let port = port();
    let (_, key) = customer(port, "fifty");
    let admitted = burst(
        port,
        &key,
        "/v1/chat/completions",
        &chat(5, json!({"n": 3})),
    );
    assert_eq!(admitted, 50);
    assert_eq!(reported(port, &key).0, 50);
}

#[test]
fn a_token_quota_holds_when_every_choice_runs_to_its_cap() {
    let port = port();
    let (_, key) = customer(port, "tokens");
    let admitted = burst(
        port,
        &key,
        "/v1/chat/completions",
        &chat(10, json!({"n": 3})),
    );
    assert_within(port, &key, admitted, 0, 200);
}

#[test]
fn a_token_quota_holds_with_best_of() {
    let port = port();
    let (_, key) = customer(port, "tokens");
    let prompt = "Write one line about the sea, please.";
    let body = json!({"model": "gpt-4o-mini", "prompt": prompt, "max_tokens": 10, "best_of": 4});
    let admitted = burst(port, &key, "/v1/completions", &body);
    assert_within(port, &key, admitted, 0, 200);
}

#[test]
fn a_token_quota_holds_with_images() {
    let port = port();
    let (_, key) = customer(port, "big");
    let image = json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}});
    let content = json!([{"type": "text", "text": "what is this"}, image, image]);
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 10,
        "messages": [{"role": "user", "content": content}]});
    let admitted = burst(port, &key, "/v1/chat/completions", &body);
    assert_within(port, &key, admitted, 0, 5000);
}

#[test]
fn a_token_quota_holds_with_previous_response_id() {
    let port = port();
    let (_, key) = customer(port, "big");
    let first = json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 40});
    let r = call(port, &key, "/v1/responses", &first, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let input = "And then, what happened next in the story?";
    let next = json!({"model": "gpt-4o-mini", "input": input, "max_output_tokens": 10,
        "previous_response_id": id, "store": false});
    let admitted = burst(port, &key, "/v1/responses", &next);
    // each reads the 61 tokens of the first again: (21 + 61 + 10) per request
    assert_within(port, &key, admitted, 1, 5000);
}

#[test]
fn a_spend_cap_holds_under_a_burst() {
    let port = port();
    let (_, key) = customer(port, "spend");
    // 51 input tokens reserved (the messages' JSON) at $0.15/M and 1 output at
    // $0.60/M: $0.00000825, so one fits under the $0.00001 cap
    let admitted = burst(port, &key, "/v1/chat/completions", &chat(1, json!({})));
    let (_, _, cost) = reported(port, &key);
    assert!(
        admitted > 0 && cost <= 0.00001,
        "{admitted} admitted, cost {cost}"
    );
}
