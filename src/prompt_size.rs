//! How big a request's prompt can be, read from its JSON before it runs. The bound is
//! in bytes: a byte-level BPE tokenizer never makes a token of less than one byte, and
//! the provider reads structured parts (tool schemas, tool inputs, JSON schemas) as
//! text, so every part of the body counts: keys, punctuation (twice, for the spaces a
//! provider may render after it), numbers by their digits, `null` and booleans. Only
//! the payload of a media part (an image's URL or data, inline audio) is left out, to
//! be bounded per model (`bounds`), and only a pre-tokenized prompt counts a token per
//! number.

use crate::usage::estimate_tokens;
use serde_json::{Map, Value};

/// Fixed per-request token overhead (role markers, framing), and per message.
const REQUEST_OVERHEAD_TOKENS: u64 = 8;
const MESSAGE_OVERHEAD_TOKENS: u64 = 4;

/// The system prompt a provider adds when a request has tools (Anthropic documents
/// 313 to 346 tokens for its current models): a generous bound.
const TOOLS_OVERHEAD_TOKENS: u64 = 600;

/// Tokens an image part is estimated at (a high-detail 1024 px image on GPT-4o); what
/// it is reserved at is the model's bound (`bounds`).
const IMAGE_ESTIMATE_TOKENS: u64 = 765;

/// Top-level fields that are never read as prompt: settings, caps and sampling
/// parameters (any other field is measured, so a new one errs on the side of a bound).
const NOT_PROMPT: [&str; 27] = [
    "model",
    "metadata",
    "user",
    "stream",
    "stream_options",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prediction",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "best_of",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "parallel_tool_calls",
    "reasoning_effort",
    "previous_response_id",
    "truncation",
];

/// Media in a prompt, bounded per model once the model is known (`bounds::apply`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Media {
    pub images: u64,
    /// Bytes of inline audio data.
    pub audio_bytes: u64,
    /// A part whose tokens cannot be bounded from the request (a PDF, a file by id or
    /// URL): its type, which a plan with hard limits refuses.
    pub unbounded: Option<&'static str>,
}

/// Prompt-cache writes a request asks for (Anthropic's `cache_control`), which bill
/// input above the plain rate.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CacheWrites {
    #[default]
    None,
    /// The default duration (5 minutes).
    Default,
    OneHour,
}

/// A request's prompt, measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptSize {
    /// Input tokens as realistically estimated (about four characters a token).
    pub estimate: u64,
    /// Input tokens at most, media payloads aside.
    pub bound: u64,
    pub media: Media,
    pub cache_writes: CacheWrites,
    /// Bytes of a predicted output (`prediction`), whose rejected tokens bill as output.
    pub prediction_bytes: u64,
}

/// The payload keys of a media part, left out of the text bound.
fn payload_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "image" => &["image_url", "source"],
        "input_audio" => &["input_audio"],
        _ => &[],
    }
}

/// How a content part of type `kind` is counted.
fn media_kind(kind: &str, part: &Map<String, Value>) -> Option<&'static str> {
    match kind {
        "image_url" | "image" | "input_image" => Some("image"),
        // Audio with no inline data is not audio: it is counted as text.
        "input_audio" => part
            .get("input_audio")
            .and_then(|a| a.get("data"))
            .and_then(Value::as_str)
            .map(|_| "input_audio"),
        "file" => Some("file"),
        "input_file" => Some("input_file"),
        // A plain-text document is text; a PDF (inline or by URL) is billed per page.
        "document" => {
            let text = part.get("source").and_then(|s| s.get("type")) == Some(&Value::from("text"));
            (!text).then_some("document")
        }
        _ => None,
    }
}

#[derive(Default)]
struct Walk {
    chars: u64,
    bytes: u64,
    token_ids: u64,
    media: Media,
    cache_writes: CacheWrites,
}

impl Walk {
    fn value(&mut self, v: &Value) {
        match v {
            // A data URL outside a media payload is not estimated as text, but its
            // bytes stay in the bound.
            Value::String(s) => {
                if !s.starts_with("data:") {
                    self.chars += s.chars().count() as u64;
                }
                self.bytes += s.len() as u64 + 2;
            }
            Value::Number(n) => self.bytes += n.to_string().len() as u64,
            Value::Bool(_) | Value::Null => self.bytes += 5,
            Value::Array(items) => {
                self.bytes += 2 * items.len() as u64 + 2;
                items.iter().for_each(|i| self.value(i));
            }
            Value::Object(map) => self.object(map),
        }
    }

    fn object(&mut self, map: &Map<String, Value>) {
        let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
        let media = media_kind(kind, map);
        match media {
            Some("image") => self.media.images += 1,
            Some("input_audio") => {
                let data = &map["input_audio"]["data"];
                self.media.audio_bytes += data.as_str().map_or(0, str::len) as u64;
            }
            Some(other) => {
                self.media.unbounded.get_or_insert(other);
            }
            None => {}
        }
        if let Some(c) = map.get("cache_control") {
            let hour = c.get("ttl").and_then(Value::as_str) == Some("1h");
            let asked = if hour {
                CacheWrites::OneHour
            } else {
                CacheWrites::Default
            };
            self.cache_writes = self.cache_writes.max(asked);
        }
        let skip = media.map_or(&[][..], payload_keys);
        self.bytes += 2;
        for (key, value) in map {
            self.bytes += key.len() as u64 + 6; // quotes, colon, comma and their spaces
            if !skip.contains(&key.as_str()) {
                self.value(value);
            }
        }
    }

    /// A pre-tokenized prompt (`prompt` of completions, `input` of embeddings): a flat
    /// or nested array of integers, a token each.
    fn token_ids(v: &Value) -> Option<u64> {
        let items = v.as_array()?;
        let mut n = 0u64;
        for item in items {
            n += match item {
                Value::Number(_) => 1,
                Value::Array(inner) if inner.iter().all(Value::is_number) => inner.len() as u64,
                _ => return None,
            };
        }
        (!items.is_empty()).then_some(n)
    }
}

/// Measures every field of a request body that can be read as prompt.
pub fn measure(body: &Map<String, Value>) -> PromptSize {
    let mut walk = Walk::default();
    for (name, value) in body {
        let ids = matches!(name.as_str(), "prompt" | "input")
            .then(|| Walk::token_ids(value))
            .flatten();
        match ids {
            Some(n) => walk.token_ids += n,
            None if NOT_PROMPT.contains(&name.as_str()) => {}
            None => walk.value(value),
        }
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as u64;
    let has_tools = ["tools", "functions"].iter().any(|f| {
        body.get(*f)
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    });
    let overhead = REQUEST_OVERHEAD_TOKENS
        + MESSAGE_OVERHEAD_TOKENS * messages
        + if has_tools { TOOLS_OVERHEAD_TOKENS } else { 0 };
    let images = walk.media.images.saturating_mul(IMAGE_ESTIMATE_TOKENS);
    let prediction = body
        .get("prediction")
        .map_or(0, |p| p.to_string().len() as u64);
    PromptSize {
        estimate: estimate_tokens(walk.chars) + walk.token_ids + images + overhead,
        bound: walk.bytes + walk.token_ids + overhead,
        media: walk.media,
        cache_writes: walk.cache_writes,
        prediction_bytes: prediction,
    }
}

#[cfg(test)]
#[path = "prompt_size_tests.rs"]
mod tests;
