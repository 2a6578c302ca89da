//! The built-in sandbox provider that `em_test_` keys talk to: deterministic answers in
//! the real OpenAI and Anthropic shapes, streaming included, with usage numbers that
//! follow from the request. Everything can be tried offline, and tests can predict
//! exactly what will be metered.

use crate::error::ApiError;
use crate::request::{Meter, Prepared};
use serde_json::{json, Value};

/// Words the sandbox answers with, one token each.
const WORDS: [&str; 12] = [
    "This",
    " is",
    " a",
    " sandbox",
    " reply",
    " from",
    " edgemeter,",
    " metered",
    " exactly",
    " like",
    " a",
    " real one.",
];

/// Output tokens when the request sets no cap.
const DEFAULT_REPLY_TOKENS: u64 = 12;

/// A ready response: status, content type and the body in the pieces it is sent in.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub chunks: Vec<Vec<u8>>,
}

fn reply_text(tokens: u64) -> Vec<&'static str> {
    (0..tokens as usize)
        .map(|i| WORDS[i % WORDS.len()])
        .collect()
}

fn json_reply(v: Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json",
        chunks: vec![v.to_string().into_bytes()],
    }
}

fn sse(events: impl IntoIterator<Item = (Option<&'static str>, Value)>, done: bool) -> Reply {
    let mut chunks: Vec<Vec<u8>> = events
        .into_iter()
        .map(|(name, data)| match name {
            Some(n) => format!("event: {n}\ndata: {data}\n\n").into_bytes(),
            None => format!("data: {data}\n\n").into_bytes(),
        })
        .collect();
    if done {
        chunks.push(b"data: [DONE]\n\n".to_vec());
    }
    Reply {
        status: 200,
        content_type: "text/event-stream",
        chunks,
    }
}

/// Answers a prepared request. `body` is what would have been sent upstream;
pub fn respond(p: &Prepared, body: &Value, now_s: i64) -> Result<Reply, ApiError> {
    let out = p
        .output_cap
        .unwrap_or(DEFAULT_REPLY_TOKENS)
        .min(DEFAULT_REPLY_TOKENS);
    let words = reply_text(out);
    let input = p.input_estimate;
    let usage = json!({"prompt_tokens": input, "completion_tokens": out, "total_tokens": input + out,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    let wants_usage = body["stream_options"]["include_usage"] == Value::Bool(true);
    let id = format!("sandbox-{now_s}");
    let model = p.model.as_str();
    match p.meter {
        Meter::ChatCompletions | Meter::Completions => {
            let chat = p.meter == Meter::ChatCompletions;
            let object = if chat {
                "chat.completion"
            } else {
                "text_completion"
            };
            if !p.stream {
                let text = words.concat();
                let choice = if chat {
                    json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
                } else {
                    json!({"index": 0, "text": text, "finish_reason": "stop"})
                };
                return Ok(json_reply(
                    json!({"id": id, "object": object, "created": now_s,
                    "model": model, "choices": [choice], "usage": usage}),
                ));
            }
            let object = if chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            let null_usage = |mut v: Value| {
                if wants_usage {
                    v["usage"] = Value::Null;
                }
                (None, v)
            };
            let piece = |text: &str, finish: Value| {
                let choice = if chat {
                    json!({"index": 0, "delta": {"content": text}, "finish_reason": finish})
                } else {
                    json!({"index": 0, "text": text, "finish_reason": finish})
                };
                json!({"id": id, "object": object, "created": now_s, "model": model, "choices": [choice]})
            };
            let mut events: Vec<_> = words
                .iter()
                .map(|w| null_usage(piece(w, Value::Null)))
                .collect();
            events.push(null_usage(piece("", json!("stop"))));
            if wants_usage {
                events.push((
                    None,
                    json!({"id": id, "object": object, "created": now_s,
                    "model": model, "choices": [], "usage": usage}),
                ));
            }
            Ok(sse(events, true))
        }
        Meter::Embeddings => {
            let inputs = match &body["input"] {
                Value::Array(items) if !items.is_empty() && !items[0].is_number() => items.len(),
                _ => 1,
            };
            let data: Vec<Value> = (0..inputs)
                .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0125, -0.5, 0.25, i as f64]}))
                .collect();
            Ok(json_reply(
                json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": input, "total_tokens": input}}),
            ))
        }
        Meter::Messages => Ok(anthropic(p, &words, &id)),
        _ => Err(ApiError::not_found(
            "This endpoint is not available in the sandbox; use an em_live_ key with an upstream.",
        )),
    }
}

fn anthropic(p: &Prepared, words: &[&str], id: &str) -> Reply {
    let input = p.input_estimate;
    let out = words.len() as u64;
    let model = p.model.as_str();
    if !p.stream {
        return json_reply(
            json!({"id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": words.concat()}], "stop_reason": "end_turn",
            "usage": {"input_tokens": input, "output_tokens": out}}),
        );
    }
    let mut events = vec![
        (
            Some("message_start"),
            json!({"type": "message_start", "message": {"id": id, "type": "message",
            "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": input, "output_tokens": 1}}}),
        ),
        (
            Some("content_block_start"),
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for w in words {
        events.push((
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    events.push((
        Some("content_block_stop"),
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push((
        Some("message_delta"),
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out}}),
    ));
    events.push((Some("message_stop"), json!({"type": "message_stop"})));
    sse(events, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::prepare;
    use crate::request::Meter as M;
    use crate::sse::{event_data, SseScanner};
    use crate::usage::settle_stream;

    fn run(path: &str, body: &str) -> (Prepared, Reply) {
        let p = prepare(path, body.as_bytes()).unwrap();
        let sent: Value = match &p.upstream_body {
            Some(b) => serde_json::from_slice(b).unwrap(),
            None => serde_json::from_str(body).unwrap(),
        };
        let r = respond(&p, &sent, 1_700_000_000).unwrap();
        (p, r)
    }

    #[test]
    fn non_streamed_usage_matches_the_request() {
        let (p, r) = run(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#,
        );
        let u = M::ChatCompletions
            .adapter()
            .read_body(&r.chunks.concat())
            .unwrap();
        assert_eq!((u.input, u.output), (p.input_estimate, 5));
    }

    #[test]
    fn streams_carry_usage_that_the_adapters_read_back() {
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/messages"] {
            let (p, r) = run(
                path,
                r#"{"model":"gpt-4o-mini","stream":true,"max_tokens":3,"prompt":"abc"}"#,
            );
            assert_eq!(r.content_type, "text/event-stream");
            let mut scanner = SseScanner::default();
            let mut adapter = M::for_path(path).adapter();
            for event in r.chunks.iter().flat_map(|c| scanner.push(c)) {
                if let Some(d) = event_data(&event) {
                    adapter.on_event(&d);
                }
            }
            let m = settle_stream(adapter.as_ref(), 0);
            assert_eq!(
                (m.usage.input, m.usage.output, m.estimated),
                (p.input_estimate, 3, false),
                "{path}"
            );
        }
    }

    #[test]
    fn embeddings_and_unsupported_paths() {
        let (_, r) = run(
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
        );
        let v: Value = serde_json::from_slice(&r.chunks[0]).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        // `/v1/models` is answered from the catalog before the sandbox; anything else
        // that is not metered has no sandbox answer
        let p = prepare("/v1/models", b"").unwrap();
        let e = respond(&p, &Value::Null, 0).unwrap_err();
        assert_eq!(e.status, 404);
    }
}
