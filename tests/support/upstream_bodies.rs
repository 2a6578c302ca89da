//! The fake upstream's answer bodies: chat completions and their SSE events, with the
//! usage the fake reports.

use super::{CACHED_TOKENS, PROMPT_TOKENS};
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
