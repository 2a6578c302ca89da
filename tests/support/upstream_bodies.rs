//! The fake upstream's answer bodies: chat completions and their SSE events, with the
//! usage the fake reports and the tokens it bills a request.

use super::{CACHED_TOKENS, IMAGE_TOKENS, PROMPT_TOKENS};
use serde_json::{json, Value};

/// Pads a chat completion's content so its JSON is at least `size` bytes.
pub(super) fn pad(done: &mut Value, size: usize) {
    let short = size.saturating_sub(done.to_string().len());
    let content = &mut done["choices"][0]["message"]["content"];
    *content = json!(format!(
        "{}{}",
        content.as_str().unwrap_or(""),
        "x".repeat(short)
    ));
}

fn usage(n: u64) -> Value {
    usage_of(PROMPT_TOKENS, n)
}

pub(super) fn usage_of(prompt: u64, n: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}, "completion_tokens_details": {"reasoning_tokens": 0}})
}

pub(super) fn chat(model: &str, n: u64) -> Value {
    let text: String = (0..n).map(|i| format!("tok{i} ")).collect();
    json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage(n)})
}

/// The exact SSE events the fake sends for a streamed chat completion.
pub fn chat_stream(model: &str, n: u64, include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    events.extend((0..n).map(|i| chunk(json!({"content": format!("tok{i} ")}), Value::Null)));
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let u = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [], "usage": usage(n)});
        events.push(format!("data: {u}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

/// Completion tokens for a request: its `max_completion_tokens`, `max_tokens` or
/// `max_output_tokens`, else 7, never more than 50.
pub fn completion_tokens(body: &Value) -> u64 {
    let cap = body["max_completion_tokens"]
        .as_u64()
        .or(body["max_tokens"].as_u64())
        .or(body["max_output_tokens"].as_u64());
    cap.unwrap_or(7).min(50)
}

/// Choices the provider generates: `n`, or `best_of` (all candidates are generated).
pub fn choices(body: &Value) -> u64 {
    let n = body["n"].as_u64().unwrap_or(1);
    n.max(body["best_of"].as_u64().unwrap_or(1)).max(1)
}

/// Prompt tokens the fake bills: a fixed count, plus each image at its most.
pub fn prompt_tokens(body: &Value) -> u64 {
    fn images(v: &Value) -> u64 {
        match v {
            Value::Array(items) => items.iter().map(images).sum(),
            Value::Object(m) if m.get("type") == Some(&json!("image_url")) => 1,
            Value::Object(m) => m.values().map(images).sum(),
            _ => 0,
        }
    }
    PROMPT_TOKENS + IMAGE_TOKENS * images(&body["messages"])
}
