//! Inline quotas through the real worker: no overshoot under concurrency, and a 429 in
//! OpenAI's shape (with `Retry-After`) at each limit, before any upstream call.

mod support;

use serde_json::json;
use std::thread;
use support::{chat, customer, meter, settled_usage, shared, unique};

fn ask(max_tokens: u64) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn two_hundred_concurrent_requests_against_a_hard_quota_of_fifty() {
    // A burst of new connections: under plain workerd (`support::plain`).
    let env = support::plain();
    let port = env.workerd.port;
    let (_, key) = customer(port, "fifty");
    let tag = unique("burst");
    let statuses: Vec<(u16, String)> = thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let (key, tag) = (&key, &tag);
                s.spawn(move || {
                    let r = chat(port, key, &ask(3), &[("x-test-tag", tag.as_str())]);
                    let kind = if r.status == 429 {
                        r.error_type()
                    } else {
                        String::new()
                    };
                    (r.status, kind)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused = statuses
        .iter()
        .filter(|(s, k)| *s == 429 && k == "insufficient_quota")
        .count();
    assert_eq!((ok, refused), (50, 150), "{statuses:?}");
    assert_eq!(
        env.upstream.tagged(&tag).len(),
        50,
        "refused requests must never reach the upstream"
    );
    let usage = settled_usage(port, &key);
    assert_eq!(
        meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        50
    );
    assert_eq!(usage["remaining"]["requests"], 0);
}

#[test]
fn requests_per_minute() {
    let env = shared();
    let (_, key) = customer(env.worker.port, "rpm");
    // 2 per fixed minute: 5 quick requests cross at most one boundary, so one of the
    // two windows sees at least 3 and refuses one.
    let responses: Vec<_> = (0..5)
        .map(|_| chat(env.worker.port, &key, &ask(1), &[]))
        .collect();
    let refused: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty());
    let r = refused[0];
    assert_eq!(r.error_type(), "rate_limit_exceeded");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let ok = responses.iter().find(|r| r.status == 200).unwrap();
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("2"));
    assert!(ok.header("x-ratelimit-remaining-requests").is_some());
    assert!(ok
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));
}

#[test]
fn tokens_per_minute() {
    let env = shared();
    let (_, key) = customer(env.worker.port, "tpm");
    let tag = unique("tpm");
    // the plan allows 100 tokens a minute; this request reserves 200 output tokens alone
    let r = chat(
        env.worker.port,
        &key,
        &ask(200),
        &[("x-test-tag", tag.as_str())],
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.error_type(), "rate_limit_exceeded");
    assert!(r.text().contains("tokens per minute"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100"));
    assert!(env.upstream.tagged(&tag).is_empty());
    assert_eq!(chat(env.worker.port, &key, &ask(10), &[]).status, 200);
}

#[test]
fn included_tokens_hard_cap() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "tokens");
    // 200 included. A request reserves its input bound, 51 (the messages as JSON, 39
    // bytes, + 12 overhead), plus 78 output: 129. The fake uses 21 + 50 = 71.
    // First: 0 + 129 <= 200, admitted.
    assert_eq!(chat(port, &key, &ask(78), &[]).status, 200);
    settled_usage(port, &key);
    // Second: 71 used + 129 = 200, exactly at the limit: admitted; 142 used after it.
    assert_eq!(chat(port, &key, &ask(78), &[]).status, 200);
    settled_usage(port, &key);
    // Third: 142 + 129 > 200: refused.
    let r = chat(port, &key, &ask(78), &[]);
    assert_eq!(r.status, 429);
    assert_eq!(r.error_type(), "insufficient_quota");
    assert!(r.text().contains("included tokens"), "{}", r.text());
    let usage = settled_usage(port, &key);
    assert!(usage["totals"]["tokens"].as_u64().unwrap() <= 200);
}

#[test]
fn spend_cap() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "spend");
    // Cap 0.00001 USD. A request reserves (51*0.15 + 1*0.60)/1e6 = 8.25e-6 and costs
    // (16*0.15 + 5*0.075 + 1*0.60)/1e6 = 3.375e-6. Second: 3.375 + 8.25 = 11.625 > 10,
    // refused before it could overshoot; the cap's rest is never enough again.
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = chat(port, &key, &ask(1), &[]);
        if r.status == 429 {
            assert_eq!(r.error_type(), "insufficient_quota");
            assert!(r.text().contains("spend cap"), "{}", r.text());
        }
        codes.push(r.status);
        settled_usage(port, &key);
    }
    assert_eq!(codes, [200, 429, 429, 429]);
    let usage = settled_usage(port, &key);
    // 3.375e-6, under the cap
    assert_eq!(usage["totals"]["cost"], "0.000003375");
}

#[test]
fn concurrent_requests_in_flight() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "solo");
    let tag = unique("solo");
    thread::scope(|s| {
        let slow = s.spawn(|| {
            let mut body = ask(10);
            body["stream"] = json!(true);
            chat(
                port,
                &key,
                &body,
                &[("x-fake-delay-ms", "200"), ("x-test-tag", tag.as_str())],
            )
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while env.upstream.tagged(&tag).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "slow request never reached upstream"
            );
            thread::sleep(std::time::Duration::from_millis(20));
        }
        let r = chat(port, &key, &ask(1), &[]);
        assert_eq!(r.status, 429);
        assert_eq!(r.error_type(), "rate_limit_exceeded");
        assert!(r.text().contains("concurrent"));
        assert_eq!(slow.join().unwrap().status, 200);
    });
    settled_usage(port, &key);
    assert_eq!(chat(port, &key, &ask(1), &[]).status, 200);
}

#[test]
fn plans_with_token_limits_bound_the_output_of_uncapped_requests() {
    let env = shared();
    let port = env.worker.port;
    let uncapped = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let (_, key) = customer(port, "tokens");
    let tag = unique("cap");
    assert_eq!(
        chat(port, &key, &uncapped, &[("x-test-tag", tag.as_str())]).status,
        200
    );
    let sent: serde_json::Value = serde_json::from_str(&env.upstream.tagged(&tag)[0].body).unwrap();
    // the plan's default_max_output_tokens, so the reservation bounds the real usage
    assert_eq!(sent["max_completion_tokens"], 40);
    assert_eq!(sent["messages"], uncapped["messages"]);

    let (_, open_key) = customer(port, "open");
    let tag = unique("nocap");
    assert_eq!(
        chat(port, &open_key, &uncapped, &[("x-test-tag", tag.as_str())]).status,
        200
    );
    let sent: serde_json::Value = serde_json::from_str(&env.upstream.tagged(&tag)[0].body).unwrap();
    assert!(
        sent.get("max_completion_tokens").is_none(),
        "a plan without token limits changes nothing"
    );
}

/// Every choice a request generates is reserved: `n` copies of the output cap.
#[test]
fn every_choice_counts_against_a_hard_token_quota() {
    let port = shared().worker.port;
    let (_, key) = customer(port, "tokens");
    let mut body = ask(40);
    // 200 included: one choice reserves 51 input + 40 output = 91, admitted alone;
    // three choices reserve 51 + 3 * 40 = 171, still within it; four, 211, are not.
    body["n"] = json!(4);
    let r = chat(port, &key, &body, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_type(), "insufficient_quota");
    body["n"] = json!(3);
    assert_eq!(chat(port, &key, &body, &[]).status, 200);
    body["n"] = json!(0);
    assert_eq!(chat(port, &key, &body, &[]).status, 400);
}

/// A cap of 2^64 - 1 must neither wrap a counter nor slip past a limit.
#[test]
fn the_largest_possible_cap_is_refused_cleanly() {
    let port = shared().worker.port;
    for plan in ["tokens", "tpm", "spend"] {
        let (_, key) = customer(port, plan);
        let r = chat(port, &key, &ask(u64::MAX), &[]);
        assert_eq!(r.status, 429, "{plan}: {}", r.text());
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            message.contains("limit") || message.contains("quota"),
            "{plan}: {message}"
        );
        // Nothing was held or wrapped: an ordinary request still fits.
        assert_eq!(chat(port, &key, &ask(1), &[]).status, 200, "{plan}");
        let usage = settled_usage(port, &key);
        assert_eq!(
            meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
            1,
            "{plan}"
        );
    }
}
