//! OpenAI-compatible shapes: chat completions, completions, embeddings, images and the
//! Responses API, streamed or not.

use super::{EventKind, Usage, UsageAdapter};
use serde_json::Value;

// Responses are read as `serde_json::Value` rather than typed structs: one generic
// parser instead of a deserializer per shape keeps the wasm bundle small.

fn count(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// Both spellings OpenAI uses: `prompt_/completion_tokens` (chat, completions,
/// embeddings) and `input_/output_tokens` (Responses API, image models).
fn normalize(u: &Value) -> Usage {
    let pick = |a: &str, b: &str| count(&u[a]).or(count(&u[b]));
    let detail = |a: &str, b: &str, field: &str| count(&u[a][field]).or(count(&u[b][field]));
    Usage {
        input: pick("prompt_tokens", "input_tokens").unwrap_or(0),
        output: pick("completion_tokens", "output_tokens").unwrap_or(0),
        cached: detail(
            "prompt_tokens_details",
            "input_tokens_details",
            "cached_tokens",
        )
        .unwrap_or(0),
        reasoning: detail(
            "completion_tokens_details",
            "output_tokens_details",
            "reasoning_tokens",
        )
        .unwrap_or(0),
        images: 0,
        duration_ms: u["seconds"]
            .as_f64()
            .map_or(0, |s| (s.max(0.0) * 1000.0).round() as u64),
        audio: detail(
            "prompt_tokens_details",
            "input_tokens_details",
            "audio_tokens",
        )
        .unwrap_or(0),
        ..Usage::default()
    }
}

/// The parts of a JSON answer usage is read from.
#[derive(serde::Deserialize)]
struct Skim {
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    data: Option<Vec<Item>>,
}

/// One `data` item, of which only whether it is an image matters.
#[derive(serde::Deserialize)]
struct Item {
    #[serde(default)]
    url: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    b64_json: Option<serde::de::IgnoredAny>,
}

impl Item {
    fn is_image(&self) -> bool {
        self.url.is_some() || self.b64_json.is_some()
    }
}

fn text_len(v: &Value) -> u64 {
    v.as_str().map_or(0, |s| s.chars().count() as u64)
}

/// Usage adapter for OpenAI and OpenAI-compatible providers.
#[derive(Debug, Default)]
pub struct OpenAi {
    reported: Option<Usage>,
    chars: u64,
}

impl UsageAdapter for OpenAi {
    fn read_body(&self, body: &[u8]) -> Option<Usage> {
        // Skimmed first: an embeddings answer can be tens of MB, and only `usage` and
        // the shape of `data` matter, so the rest is read past without being built.
        let (usage, images) = match serde_json::from_slice::<Skim>(body) {
            Ok(s) => (
                s.usage,
                s.data
                    .map_or(0, |d| d.iter().filter(|i| i.is_image()).count()),
            ),
            Err(_) => {
                let body: Value = serde_json::from_slice(body).ok()?;
                let is_image = |i: &&Value| i.get("url").is_some() || i.get("b64_json").is_some();
                let images = body["data"]
                    .as_array()
                    .map_or(0, |items| items.iter().filter(is_image).count());
                (body.get("usage").cloned(), images)
            }
        };
        let images = images as u64;
        let usage = usage.as_ref().filter(|u| u.is_object());
        match (usage, images) {
            (None, 0) => None,
            (usage, images) => Some(Usage {
                images,
                ..usage.map(normalize).unwrap_or_default()
            }),
        }
    }

    fn on_event(&mut self, data: &str) -> EventKind {
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return EventKind::Other; // `[DONE]` and anything we do not understand
        };
        let choices = chunk["choices"].as_array();
        for choice in choices.into_iter().flatten() {
            let delta = &choice["delta"];
            self.chars += text_len(&choice["text"])
                + text_len(&delta["content"])
                + text_len(&delta["reasoning_content"]);
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.chars += text_len(&call["function"]["arguments"]);
            }
        }
        self.chars += text_len(&chunk["delta"]); // Responses API text deltas
                                                 // A Responses stream ends with one of these, each with the response's usage:
                                                 // an incomplete or failed response still spent its tokens (reasoning included).
        let ended = [
            "response.completed",
            "response.incomplete",
            "response.failed",
        ];
        if ended.iter().any(|t| chunk["type"] == *t) {
            if chunk["response"]["usage"].is_object() {
                self.reported = Some(normalize(&chunk["response"]["usage"]));
            }
            return EventKind::Other;
        }
        if !chunk["usage"].is_object() {
            return EventKind::Other;
        }
        self.reported = Some(normalize(&chunk["usage"]));
        if choices.is_none_or(|c| c.is_empty()) {
            EventKind::UsageOnly
        } else {
            EventKind::Other
        }
    }

    fn reported(&self) -> Option<Usage> {
        self.reported
    }

    fn delivered_chars(&self) -> u64 {
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{settle_stream, Metered};

    // Recorded from the chat completions API (ids shortened).
    const CHAT: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1732000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"system_fingerprint":"fp_1"}"#;
    const REASONING: &str = r#"{"id":"chatcmpl-2","object":"chat.completion","model":"o3-mini","choices":[],"usage":{"prompt_tokens":75,"completion_tokens":1186,"total_tokens":1261,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":1024}}}"#;
    const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023,-0.0093]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    const IMAGES: &str = r#"{"created":1713833628,"data":[{"b64_json":"AAAA"},{"b64_json":"BBBB"}],"usage":{"total_tokens":100,"input_tokens":50,"output_tokens":50,"input_tokens_details":{"text_tokens":10,"image_tokens":40}}}"#;
    const RESPONSES: &str = r#"{"id":"resp_1","object":"response","status":"completed","usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;

    #[test]
    fn durations_are_counted_in_milliseconds() {
        let u = normalize(&serde_json::json!({"type": "duration", "seconds": 2.5}));
        assert_eq!(u.duration_ms, 2_500);
        let u = normalize(&serde_json::json!({"type": "duration", "seconds": 0.0004}));
        assert_eq!(u.duration_ms, 0);
    }

    #[test]
    fn reads_non_streamed_bodies() {
        let a = OpenAi::default();
        let chat = a.read_body(CHAT.as_bytes()).unwrap();
        assert_eq!((chat.input, chat.output, chat.cached), (1117, 46, 1024));
        let r = a.read_body(REASONING.as_bytes()).unwrap();
        assert_eq!((r.output, r.reasoning), (1186, 1024));
        let e = a.read_body(EMBEDDINGS.as_bytes()).unwrap();
        assert_eq!((e.input, e.output, e.images), (8, 0, 0));
        let i = a.read_body(IMAGES.as_bytes()).unwrap();
        assert_eq!((i.input, i.output, i.images), (50, 50, 2));
        let resp = a.read_body(RESPONSES.as_bytes()).unwrap();
        assert_eq!((resp.input, resp.output), (36, 87));
        assert_eq!(a.read_body(br#"{"object":"list","data":[]}"#), None);
        assert_eq!(a.read_body(b"not json"), None);
    }

    // Recorded stream with `stream_options.include_usage`: every chunk carries
    // `"usage":null` and the last one carries usage with empty choices.
    const STREAM: [&str; 5] = [
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        "[DONE]",
    ];

    #[test]
    fn stream_with_usage_is_exact_and_usage_chunk_is_recognised() {
        let mut a = OpenAi::default();
        let kinds: Vec<EventKind> = STREAM.iter().map(|d| a.on_event(d)).collect();
        assert_eq!(kinds[3], EventKind::UsageOnly);
        assert_eq!(
            kinds.iter().filter(|k| **k == EventKind::UsageOnly).count(),
            1
        );
        let m = settle_stream(&a, 100);
        assert_eq!(m.usage.tokens(), 11);
        assert!(!m.estimated);
    }

    #[test]
    fn stream_without_usage_is_estimated_from_delivered_text() {
        let mut a = OpenAi::default();
        for d in &STREAM[..3] {
            a.on_event(d);
        }
        // "Hello" is 5 chars -> ceil(5/4) = 2 output tokens; input from the admission estimate.
        let m = settle_stream(&a, 40);
        assert_eq!(
            m,
            Metered {
                usage: Usage {
                    input: 40,
                    output: 2,
                    ..Usage::default()
                },
                estimated: true
            }
        );
    }

    #[test]
    fn aborted_stream_counts_tool_call_arguments_and_completions_text() {
        let mut a = OpenAi::default();
        a.on_event(r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#);
        a.on_event(r#"{"choices":[{"text":"abcd","index":0}]}"#);
        // 8 + 4 = 12 chars -> 3 tokens
        assert_eq!(settle_stream(&a, 0).usage.output, 3);
    }

    #[test]
    fn responses_api_stream_reads_completed_event() {
        let mut a = OpenAi::default();
        a.on_event(r#"{"type":"response.output_text.delta","delta":"Hi there"}"#);
        assert_eq!(a.delivered_chars(), 8);
        let done = format!(r#"{{"type":"response.completed","response":{RESPONSES}}}"#);
        assert_eq!(a.on_event(&done), EventKind::Other);
        assert_eq!(a.reported().unwrap().output, 87);
    }

    #[test]
    fn an_incomplete_or_failed_response_reports_its_usage_too() {
        for ended in ["response.incomplete", "response.failed"] {
            let mut a = OpenAi::default();
            a.on_event(r#"{"type":"response.output_text.delta","delta":"Hi"}"#);
            let event = format!(r#"{{"type":"{ended}","response":{RESPONSES}}}"#);
            a.on_event(&event);
            // what the provider reported, not 2 visible characters
            let m = settle_stream(&a, 0);
            assert_eq!((m.usage.output, m.estimated), (87, false), "{ended}");
        }
    }
}
