//! Anthropic's messages API. Its `input_tokens` excludes cache reads, so they are added
//! back to make `input` mean the whole prompt as it does for OpenAI. In a stream,
//! `message_start` reports the input and each `message_delta` reports the output so far
//! (cumulative, so the latest value replaces the previous one rather than adding to it).

use super::{EventKind, Usage, UsageAdapter};
use serde_json::Value;

/// The whole prompt: fresh input plus cache reads and cache writes.
fn input_of(u: &Value) -> Option<u64> {
    let fresh = u["input_tokens"].as_u64()?;
    let cache = |f: &str| u[f].as_u64().unwrap_or(0);
    let cached =
        cache("cache_read_input_tokens").saturating_add(cache("cache_creation_input_tokens"));
    Some(fresh.saturating_add(cached))
}

/// Cache writes as (default 5-minute, 1-hour), given those known so far (`seen`): the
/// total of `cache_creation_input_tokens` and the one-hour part of its `cache_creation`
/// breakdown, each kept from `seen` when this usage leaves it out (a stream's
/// `message_delta` repeats the total without the breakdown). The one-hour part is never
/// more than the total.
fn cache_writes(u: &Value, seen: (u64, u64)) -> (u64, u64) {
    let all = u["cache_creation_input_tokens"].as_u64();
    let all = all.unwrap_or(seen.0.saturating_add(seen.1));
    let hour = u["cache_creation"]["ephemeral_1h_input_tokens"].as_u64();
    let hour = hour.unwrap_or(seen.1).min(all);
    (all - hour, hour)
}

/// Usage adapter for Anthropic's `/v1/messages`.
#[derive(Debug, Default)]
pub struct Anthropic {
    input: Option<u64>,
    cached: u64,
    writes: (u64, u64),
    output: Option<u64>,
    chars: u64,
}

impl UsageAdapter for Anthropic {
    fn read_body(&self, body: &[u8]) -> Option<Usage> {
        // Only `usage` is built; the content is read past.
        #[derive(serde::Deserialize)]
        struct Skim {
            #[serde(default)]
            usage: Option<Value>,
        }
        let skim: Skim = serde_json::from_slice(body).ok()?;
        let u = &skim.usage.filter(|u| u.is_object())?;
        let (cache_write, cache_write_1h) = cache_writes(u, (0, 0));
        Some(Usage {
            input: input_of(u).unwrap_or(0),
            output: u["output_tokens"].as_u64().unwrap_or(0),
            cached: u["cache_read_input_tokens"].as_u64().unwrap_or(0),
            cache_write,
            cache_write_1h,
            ..Usage::default()
        })
    }

    fn on_event(&mut self, data: &str) -> EventKind {
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return EventKind::Other;
        };
        let kind = event["type"].as_str().unwrap_or("");
        let usage = match kind {
            "message_start" => &event["message"]["usage"],
            "message_delta" => &event["usage"],
            _ => &Value::Null,
        };
        if let Some(input) = input_of(usage) {
            self.input = Some(input);
            self.cached = usage["cache_read_input_tokens"]
                .as_u64()
                .unwrap_or(self.cached);
            self.writes = cache_writes(usage, self.writes);
        }
        if kind == "message_delta" {
            self.output = usage["output_tokens"].as_u64().or(self.output);
        }
        let delta = &event["delta"];
        for field in ["text", "partial_json", "thinking"] {
            self.chars += delta[field]
                .as_str()
                .map_or(0, |s| s.chars().count() as u64);
        }
        EventKind::Other // Anthropic streams usage inside events clients expect
    }

    fn reported(&self) -> Option<Usage> {
        Some(Usage {
            input: self.input?,
            output: self.output?,
            cached: self.cached,
            cache_write: self.writes.0,
            cache_write_1h: self.writes.1,
            ..Usage::default()
        })
    }

    fn delivered_chars(&self) -> u64 {
        self.chars
    }

    fn reported_input(&self) -> Option<u64> {
        self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::settle_stream;

    const BODY: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":6}}"#;
    const STREAM: [&str; 6] = [
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello world!"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":10}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        r#"{"type":"message_stop"}"#,
    ];

    #[test]
    fn body_adds_cache_reads_to_input() {
        let u = Anthropic::default().read_body(BODY.as_bytes()).unwrap();
        // 12 fresh + 100 cache reads = 112 input, of which 100 cached
        assert_eq!((u.input, u.cached, u.output), (112, 100, 6));
    }

    #[test]
    fn message_delta_usage_is_cumulative_not_summed() {
        let mut a = Anthropic::default();
        for e in STREAM {
            assert_eq!(a.on_event(e), EventKind::Other);
        }
        let m = settle_stream(&a, 999);
        // 25 input; output is the last cumulative value 15, not 10 + 15
        assert_eq!(
            (m.usage.input, m.usage.output, m.estimated),
            (25, 15, false)
        );
    }

    #[test]
    fn aborted_before_message_delta_keeps_reported_input() {
        let mut a = Anthropic::default();
        for e in &STREAM[..3] {
            a.on_event(e);
        }
        let m = settle_stream(&a, 999);
        // input 25 as reported; output ceil(12 chars / 4) = 3, estimated
        assert_eq!((m.usage.input, m.usage.output, m.estimated), (25, 3, true));
    }

    #[test]
    fn one_hour_cache_writes_survive_a_delta_without_the_breakdown() {
        let mut a = Anthropic::default();
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":0,"cache_creation_input_tokens":100,"cache_creation":{"ephemeral_5m_input_tokens":60,"ephemeral_1h_input_tokens":40},"output_tokens":1}}}"#;
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"output_tokens":9}}"#;
        a.on_event(start);
        a.on_event(delta);
        let u = a.reported().unwrap();
        assert_eq!(
            (u.input, u.cache_write, u.cache_write_1h, u.output),
            (105, 60, 40, 9)
        );
        // An upstream claiming more one-hour writes than writes gets the total only.
        let body = br#"{"usage":{"input_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":900},"output_tokens":1}}"#;
        let u = a.read_body(body).unwrap();
        assert_eq!((u.cache_write, u.cache_write_1h), (0, 10));
    }
}
