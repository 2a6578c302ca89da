//! Metering through the real worker under `wrangler dev`: exact counts for mixed
//! traffic, byte-for-byte streaming, aborted streams, idempotent retries, key handling.

mod support;

use serde_json::json;
use support::upstream::{chat_stream, CACHED_TOKENS, EMBEDDING_TOKENS, PROMPT_TOKENS};
use support::wrangler::UPSTREAM_KEY;
use support::{call, chat, customer, http, meter, settled_usage, shared};

fn ask(max_tokens: u64, stream: bool) -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "stream": stream,
        "messages": [{"role": "user", "content": "Say something"}]})
}

#[test]
fn mixed_requests_are_metered_exactly() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let mut output = 0;
    for n in 1..=6 {
        let r = chat(port, &key, &ask(n, false), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        output += n;
    }
    for _ in 0..3 {
        let r = chat(port, &key, &ask(4, true), &[]);
        assert_eq!(r.status, 200);
        assert!(r.text().ends_with("data: [DONE]\n\n"));
        output += 4;
    }
    let mut with_usage = ask(2, true);
    with_usage["stream_options"] = json!({"include_usage": true});
    for _ in 0..2 {
        assert_eq!(chat(port, &key, &with_usage, &[]).status, 200);
        output += 2;
    }
    for _ in 0..3 {
        let r = call(
            port,
            &key,
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": "hi"}),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for _ in 0..2 {
        let r = http::request(
            port,
            "GET",
            "/v1/models",
            &[("authorization", &format!("Bearer {key}"))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let usage = settled_usage(port, &key);
    let chat_row = meter(&usage, "chat.completions", "gpt-4o-mini");
    // 6 + 3 + 2 = 11 chat requests, each reporting 21 prompt tokens of which 5 cached
    assert_eq!(chat_row["requests"], 11);
    assert_eq!(chat_row["input"], 11 * PROMPT_TOKENS);
    assert_eq!(chat_row["cached"], 11 * CACHED_TOKENS);
    // 1+2+3+4+5+6 = 21, + 3*4 = 12, + 2*2 = 4: 37 output tokens
    assert_eq!(chat_row["output"], output);
    assert_eq!(output, 37);
    assert_eq!(chat_row["estimated"], 0);
    let emb = meter(&usage, "embeddings", "text-embedding-3-small");
    assert_eq!(
        (emb["requests"].as_u64(), emb["input"].as_u64()),
        (Some(3), Some(3 * EMBEDDING_TOKENS))
    );
    // `/v1/models` is answered from the catalog: no provider call, nothing metered
    assert_eq!(meter(&usage, "requests", "")["requests"], 0);
    // chat: fresh 11*16*0.15 + cached 11*5*0.075 + out 37*0.60 = 26.4 + 4.125 + 22.2 = 52.725 per 1e6
    assert_eq!(chat_row["cost"], "0.000052725");
    // embeddings: 24 * 0.02 / 1e6 = 0.00000048; total 0.000053205
    assert_eq!(usage["totals"]["cost"], "0.000053205");
}

#[test]
fn cost_header_is_the_exact_cost_of_the_request() {
    let env = shared();
    let (_, key) = customer(env.worker.port, "open");
    let r = chat(env.worker.port, &key, &ask(7, false), &[]);
    // fresh 16*0.15 + cached 5*0.075 + out 7*0.60 = 2.4 + 0.375 + 4.2 = 6.975 per 1e6
    assert_eq!(r.header("x-edgemeter-cost"), Some("0.000006975"));
    assert_eq!(r.header("x-edgemeter-cost-basis"), Some("actual"));
}

#[test]
fn stream_passes_through_byte_for_byte() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let mut body = ask(5, true);
    body["stream_options"] = json!({"include_usage": true});
    let r = chat(port, &key, &body, &[]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.text(), chat_stream("gpt-4o-mini", 5, true).concat());

    // Without include_usage the proxy asks upstream for usage and hides that one event.
    let r = chat(port, &key, &ask(5, true), &[]);
    let mut expected = chat_stream("gpt-4o-mini", 5, true);
    expected.retain(|e| !e.contains("\"choices\":[]"));
    assert_eq!(r.text(), expected.concat());
    assert!(!r.text().contains("prompt_tokens"));
    let usage = settled_usage(port, &key);
    let row = meter(&usage, "chat.completions", "gpt-4o-mini");
    assert_eq!(
        (
            row["requests"].as_u64(),
            row["output"].as_u64(),
            row["estimated"].as_u64()
        ),
        (Some(2), Some(10), Some(0))
    );
}

#[test]
fn aborted_stream_is_metered_by_what_the_provider_reports_after_the_client_left() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let body = ask(40, true).to_string();
    let auth = format!("Bearer {key}");
    let headers = [("authorization", auth.as_str()), ("x-fake-delay-ms", "150")];
    let got = http::read_then_hang_up(
        port,
        "/v1/chat/completions",
        &headers,
        body.as_bytes(),
        "tok2 ",
    );
    assert!(got.contains("tok0 "));

    let usage = settled_usage(port, &key);
    let row = meter(&usage, "chat.completions", "gpt-4o-mini");
    // The stream is read on after the client left, until the provider's usage event:
    // all 40 tokens it generated, exactly, not the 3 the client saw.
    assert_eq!(row["requests"], 1, "{usage}");
    assert_eq!(
        (row["output"].as_u64(), row["estimated"].as_u64()),
        (Some(40), Some(0)),
        "{usage}"
    );
    assert!(row["input"].as_u64().unwrap() > 0);
}

#[test]
fn idempotent_retry_is_metered_once() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let tag = support::unique("idem");
    let headers = [("idempotency-key", "retry-1"), ("x-test-tag", tag.as_str())];
    let first = chat(port, &key, &ask(3, false), &headers);
    assert_eq!(first.status, 200);
    settled_usage(port, &key);
    let second = chat(port, &key, &ask(3, false), &headers);
    assert_eq!(second.status, 200);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.body, first.body);
    assert_eq!(
        env.upstream.tagged(&tag).len(),
        1,
        "the retry must not reach the upstream"
    );
    let usage = settled_usage(port, &key);
    assert_eq!(
        meter(&usage, "chat.completions", "gpt-4o-mini")["requests"],
        1
    );

    let other = chat(port, &key, &ask(4, false), &headers);
    assert_eq!(
        other.status,
        400,
        "same key, different body: {}",
        other.text()
    );
    assert_eq!(other.json()["error"]["code"], "idempotency_key_reused");
}

#[test]
fn customer_key_is_swapped_for_the_upstream_key() {
    let env = shared();
    let port = env.worker.port;
    let (_, key) = customer(port, "open");
    let tag = support::unique("auth");
    let r = chat(port, &key, &ask(1, false), &[("x-test-tag", tag.as_str())]);
    assert_eq!(r.status, 200);
    let seen = env.upstream.tagged(&tag);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    assert!(!seen[0].body.contains("em_live_"));
    let all_headers = format!("{:?}", r.headers);
    assert!(!all_headers.contains(UPSTREAM_KEY) && !r.text().contains(UPSTREAM_KEY));
}
