//! Reading a client's request before it goes upstream: which meter it belongs to, the
//! model, whether it streams, what to reserve, and the body to forward (with
//! `stream_options.include_usage` switched on so a stream always reports its usage).

use crate::error::ApiError;
use crate::usage::{estimate_tokens, Anthropic, OpenAi, UsageAdapter};
use serde_json::{Map, Value};

/// Fixed per-request token overhead added to input estimates (role markers, framing).
const INPUT_OVERHEAD_TOKENS: u64 = 8;

/// The API family a path is metered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's messages API.
    Messages,
    /// Any other `/v1/*` path: passed through and counted as a request.
    Request,
}

impl Meter {
    pub fn for_path(path: &str) -> Meter {
        match path {
            "/v1/chat/completions" => Meter::ChatCompletions,
            "/v1/completions" => Meter::Completions,
            "/v1/embeddings" => Meter::Embeddings,
            "/v1/responses" => Meter::Responses,
            "/v1/messages" => Meter::Messages,
            _ => Meter::Request,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Meter::ChatCompletions => "chat.completions",
            Meter::Completions => "completions",
            Meter::Embeddings => "embeddings",
            Meter::Responses => "responses",
            Meter::Messages => "messages",
            Meter::Request => "requests",
        }
    }

    /// The usage reader for this API family's responses.
    pub fn adapter(self) -> Box<dyn UsageAdapter> {
        match self {
            Meter::Messages => Box::new(Anthropic::default()),
            _ => Box::new(OpenAi::default()),
        }
    }

    /// Whether usage is counted in tokens (and so needs a priced model).
    pub fn by_tokens(self) -> bool {
        self != Meter::Request
    }
}

/// A request understood and ready to forward.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub meter: Meter,
    /// Empty for plain requests.
    pub model: String,
    pub stream: bool,
    /// Whether the client itself asked for the usage chunk of a stream.
    pub client_wants_usage: bool,
    /// Input tokens as realistically estimated (used when a provider reports none).
    pub input_estimate: u64,
    /// Input tokens reserved at admission: an upper bound, so quotas cannot be overshot.
    pub input_reserve: u64,
    /// Output tokens to reserve: the client's own cap or the plan default.
    pub output_cap: Option<u64>,
    /// Completions generated per request (`n`, `best_of`), each up to the cap.
    pub choices: u64,
    /// Media parts, not yet in `input_reserve` until the model's bounds are applied.
    pub media: Media,
    /// The model's most output tokens, once known: caps above it are reserved at it.
    pub max_output: Option<u64>,
    /// The body to send upstream; `None` means forward the client's bytes unchanged.
    pub upstream_body: Option<Vec<u8>>,
}

/// Tokens an image part is estimated at (a high-detail 1024 px image on GPT-4o); what
/// it is reserved at is the model's bound (`bounds`).
const IMAGE_ESTIMATE_TOKENS: u64 = 765;

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

/// How a content part of type `kind` is counted.
fn media_kind(kind: &str, part: &Map<String, Value>) -> Option<&'static str> {
    match kind {
        "image_url" | "image" | "input_image" => Some("image"),
        "input_audio" => Some("input_audio"),
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

/// What a prompt is made of. Characters give a realistic token estimate (about four a
/// token); UTF-8 bytes give a strict upper bound, since byte-level BPE tokenizers never
/// make a token of less than one byte.
#[derive(Debug, Default)]
struct PromptSize {
    chars: u64,
    bytes: u64,
    /// Integers in a pre-tokenized prompt: one token each.
    token_ids: u64,
    media: Media,
}

impl PromptSize {
    fn measure(&mut self, v: &Value) {
        match v {
            // A data URL outside a known media part (a file part, or plain text that
            // merely starts so) is not estimated as text, but its bytes stay in the
            // bound: the bound must never be smaller than what the provider may count.
            Value::String(s) if s.starts_with("data:") => self.bytes += s.len() as u64,
            Value::String(s) => {
                self.chars += s.chars().count() as u64;
                self.bytes += s.len() as u64;
            }
            Value::Number(_) => self.token_ids += 1,
            Value::Array(items) => items.iter().for_each(|i| self.measure(i)),
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
                match media_kind(kind, map) {
                    Some("image") => {
                        self.media.images += 1;
                        return;
                    }
                    Some("input_audio") => {
                        let data = map.get("input_audio").and_then(|a| a.get("data"));
                        let bytes = data.and_then(Value::as_str).map_or(0, str::len);
                        self.media.audio_bytes += bytes as u64;
                        return;
                    }
                    Some(other) => {
                        self.media.unbounded.get_or_insert(other);
                        return;
                    }
                    None => {}
                }
                for (key, value) in map {
                    self.bytes += key.len() as u64; // keys of tool schemas become tokens
                    self.measure(value);
                }
            }
            _ => {}
        }
    }
}

/// (realistic estimate, upper bound) of a request's text input tokens, and its media.
fn input_tokens(body: &Map<String, Value>) -> (u64, u64, Media) {
    let fields = [
        "messages",
        "prompt",
        "input",
        "system",
        "tools",
        "instructions",
    ];
    let mut size = PromptSize::default();
    for value in fields.iter().filter_map(|f| body.get(*f)) {
        size.measure(value);
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |m| m.len() as u64);
    let overhead = INPUT_OVERHEAD_TOKENS + 4 * messages;
    let images = size.media.images.saturating_mul(IMAGE_ESTIMATE_TOKENS);
    let estimate = estimate_tokens(size.chars) + size.token_ids + images;
    let bound = size.bytes + size.token_ids;
    (estimate + overhead, bound + overhead, size.media)
}

/// The request body with its output cap in the spelling the upstream honours (`chat`
/// for chat completions), for a request that named none under a plan whose hard limits
/// need one, or named it in another spelling. `None` when the body is not a JSON object.
pub fn with_output_cap(meter: Meter, body: &[u8], cap: u64, chat: &str) -> Option<Vec<u8>> {
    let field = match meter {
        Meter::ChatCompletions => chat,
        Meter::Responses => "max_output_tokens",
        Meter::Completions | Meter::Messages => "max_tokens",
        Meter::Embeddings | Meter::Request => return None,
    };
    let mut json: Map<String, Value> = serde_json::from_slice(body).ok()?;
    json.insert(field.to_string(), Value::from(cap));
    serde_json::to_vec(&json).ok()
}

/// The request's output cap. Every spelling it uses must agree: which one an upstream
/// honours differs, so two different caps leave the real one unknown.
fn output_cap(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    let mut found: Option<(&str, u64)> = None;
    for field in CAP_FIELDS {
        match body.get(field) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                let n = v.as_u64().ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_value",
                        format!("`{field}` must be a non-negative integer."),
                    )
                    .with_param(field)
                })?;
                if let Some((first, m)) = found.filter(|(_, m)| *m != n) {
                    let msg = format!(
                        "`{first}` ({m}) and `{field}` ({n}) conflict; send one output cap."
                    );
                    return Err(ApiError::bad_request("conflicting_caps", msg).with_param(field));
                }
                found = Some((field, n));
            }
        }
    }
    Ok(found.map(|(_, n)| n))
}

/// Puts a chat request's cap in the spelling the upstream honours (`field`), keeping
/// the others: an upstream that reads only one must still see the cap that was reserved.
pub fn honour_cap(json: &mut Map<String, Value>, field: &str) -> Result<(), ApiError> {
    if let Some(cap) = output_cap(json)? {
        json.insert(field.to_string(), Value::from(cap));
    }
    Ok(())
}

/// Every spelling of an output cap.
pub const CAP_FIELDS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

impl Prepared {
    /// A request counted once, with no tokens: file operations.
    pub fn plain() -> Prepared {
        Prepared {
            meter: Meter::Request,
            model: String::new(),
            stream: false,
            client_wants_usage: false,
            input_estimate: 0,
            input_reserve: 0,
            output_cap: Some(0),
            choices: 1,
            media: Media::default(),
            max_output: None,
            upstream_body: None,
        }
    }
}

impl Prepared {
    /// What the counter is asked to reserve for this request.
    pub fn ask(&self) -> crate::counter_state::AdmitAsk {
        crate::counter_state::AdmitAsk {
            meter: self.meter.name().to_string(),
            model: self.model.clone(),
            input_estimate: self.input_estimate,
            input_reserve: self.input_reserve,
            output_cap: self.output_cap,
            choices: self.choices,
            unbounded: self.media.unbounded.map(String::from),
            max_output: self.max_output,
        }
    }
}

/// A JSON request body, which must be an object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_json("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid_json(e)),
    }
}

/// Reads a request for `path`. Token-metered paths need a JSON object with a `model`.
pub fn prepare(path: &str, body: &[u8]) -> Result<Prepared, ApiError> {
    let meter = Meter::for_path(path);
    if !meter.by_tokens() {
        return Ok(Prepared::plain());
    }
    prepare_json(meter, parse_object(body)?)
}

/// Reads a parsed, already sanitized request body. The body sent upstream is always
/// this object re-serialised: what was metered is exactly what the provider gets.
pub fn prepare_json(meter: Meter, mut json: Map<String, Value>) -> Result<Prepared, ApiError> {
    let model = match json.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            let msg = "You must provide a model parameter.";
            return Err(ApiError::bad_request("missing_model", msg).with_param("model"));
        }
    };
    let stream = json.get("stream") == Some(&Value::Bool(true));
    let output_cap = match meter {
        Meter::Embeddings => Some(0),
        _ => output_cap(&json)?,
    };
    let (input_estimate, input_reserve, media) = input_tokens(&json);
    let asks_usage = |j: &Map<String, Value>| {
        j.get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let client_wants_usage = asks_usage(&json);
    let needs_usage_option = stream
        && !client_wants_usage
        && matches!(meter, Meter::ChatCompletions | Meter::Completions);
    if needs_usage_option {
        let options = json
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            let msg = "`stream_options` must be an object.";
            return Err(ApiError::bad_request("invalid_value", msg).with_param("stream_options"));
        }
        options["include_usage"] = Value::Bool(true);
    }
    let upstream_body =
        Some(serde_json::to_vec(&json).map_err(|e| ApiError::internal(e.to_string()))?);
    Ok(Prepared {
        meter,
        model,
        stream,
        client_wants_usage: client_wants_usage || !needs_usage_option,
        input_estimate,
        input_reserve,
        output_cap,
        choices: choices(&json)?,
        media,
        max_output: None,
        upstream_body,
    })
}

/// The largest `n` (and `best_of`) a request may ask for: the providers' own limits.
const MAX_CHOICES: u64 = 128;

/// How many completions a request generates: the larger of `n` and `best_of`.
fn choices(body: &Map<String, Value>) -> Result<u64, ApiError> {
    let mut most = 1;
    for field in ["n", "best_of"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v.as_u64().filter(|n| (1..=MAX_CHOICES).contains(n));
                let n = n.ok_or_else(|| {
                    let msg = format!("`{field}` must be an integer from 1 to {MAX_CHOICES}.");
                    ApiError::bad_request("invalid_value", msg).with_param(field)
                })?;
                most = most.max(n);
            }
        }
    }
    Ok(most)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_gets_include_usage_injected_and_remembers_the_client_did_not_ask() {
        let body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello there"}]}"#;
        let p = prepare("/v1/chat/completions", body).unwrap();
        assert!(p.stream && !p.client_wants_usage);
        let sent: Value = serde_json::from_slice(p.upstream_body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(sent["messages"][0]["content"], "Hello there");
        // "user" (4) + "Hello there" (11) = 15 chars -> 4 tokens, + 8 + 4 per message
        assert_eq!(p.input_estimate, 16);
        // bound: keys "role" + "content" (11) + values (15) = 26 bytes, + 12 overhead
        assert_eq!(p.input_reserve, 38);
    }

    #[test]
    fn client_that_asked_for_usage_is_forwarded_as_parsed() {
        let body =
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        let p = prepare("/v1/chat/completions", body).unwrap();
        assert!(p.client_wants_usage);
        let sent: Value = serde_json::from_slice(p.upstream_body.as_ref().unwrap()).unwrap();
        assert_eq!(sent, serde_json::from_slice::<Value>(body).unwrap());
        // the parsed object, not the client's bytes: white space and duplicates are gone
        let spaced = br#"{ "model": "m", "model": "n", "messages": [] }"#;
        let plain = prepare("/v1/chat/completions", spaced).unwrap();
        assert!(!plain.stream);
        assert_eq!(
            plain.upstream_body.unwrap(),
            br#"{"messages":[],"model":"n"}"#
        );
    }

    #[test]
    fn output_cap_comes_from_any_spelling() {
        let p = prepare(
            "/v1/chat/completions",
            br#"{"model":"m","max_completion_tokens":77}"#,
        );
        assert_eq!(p.unwrap().output_cap, Some(77));
        let p = prepare("/v1/messages", br#"{"model":"m","max_tokens":5}"#).unwrap();
        assert_eq!((p.meter, p.output_cap), (Meter::Messages, Some(5)));
        let e = prepare("/v1/completions", br#"{"model":"m","max_tokens":-1}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
    }

    #[test]
    fn bad_bodies_are_rejected_in_openai_shape() {
        let e = prepare("/v1/chat/completions", b"{not json").unwrap_err();
        assert_eq!((e.status, e.code.as_deref()), (400, Some("invalid_json")));
        let e = prepare("/v1/chat/completions", b"[1,2]").unwrap_err();
        assert_eq!(e.status, 400);
        let e = prepare("/v1/embeddings", br#"{"input":"x"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = prepare(
            "/v1/chat/completions",
            br#"{"model":"m","stream":true,"stream_options":3}"#,
        );
        assert_eq!(e.unwrap_err().param.as_deref(), Some("stream_options"));
    }

    #[test]
    fn inline_images_count_per_image_not_per_byte_and_token_arrays_count() {
        let with_image = |data: &str| {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{data}"}}}}]}}]}}"#
            );
            prepare("/v1/chat/completions", body.as_bytes()).unwrap()
        };
        let (big, small) = (with_image(&"A".repeat(100_000)), with_image("AA"));
        assert_eq!(
            (big.input_estimate, big.input_reserve),
            (small.input_estimate, small.input_reserve)
        );
        // "user" -> 1 token + one image at 765 + 12 overhead
        assert_eq!(big.input_estimate, 778);
        // text bound: "role" + "content" + "user" = 15 bytes + 12; the image is
        // bounded per model once the model is known (`bounds::apply`)
        assert_eq!((big.input_reserve, big.media.images), (27, 1));
        let p = prepare("/v1/embeddings", br#"{"model":"m","input":[[1,2,3]]}"#).unwrap();
        // three token ids -> 3 tokens + 8; embeddings reserve no output
        assert_eq!(
            (p.input_estimate, p.input_reserve, p.output_cap),
            (11, 11, Some(0))
        );
    }

    #[test]
    fn every_generated_choice_is_reserved() {
        let ask = |extra: &str| {
            let body = format!(r#"{{"model":"m","prompt":"hi","max_tokens":50{extra}}}"#);
            prepare("/v1/completions", body.as_bytes()).map(|p| p.ask())
        };
        assert_eq!(ask("").unwrap().choices, 1);
        assert_eq!(ask(r#","n":4"#).unwrap().choices, 4);
        // all best_of candidates are generated, n of them returned
        assert_eq!(ask(r#","n":2,"best_of":5"#).unwrap().choices, 5);
        let e = ask(r#","n":0"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        assert!(ask(r#","best_of":100000"#).is_err());
        let plan = crate::catalog::Plan::default();
        // 50 tokens per choice * 4 choices
        let reserve = crate::counter_state::reserve_of(&plan, &ask(r#","n":4"#).unwrap());
        assert_eq!(reserve.output, 200);
        let huge = crate::counter_state::AdmitAsk {
            output_cap: Some(u64::MAX),
            choices: 4,
            ..ask("").unwrap()
        };
        assert_eq!(
            crate::counter_state::reserve_of(&plan, &huge).output,
            u64::MAX
        );
    }

    #[test]
    fn text_that_starts_like_a_data_url_stays_in_the_bound() {
        let text = format!("data: {}", "x".repeat(10_000));
        let body = serde_json::json!({"model": "m", "input": text}).to_string();
        let p = prepare("/v1/responses", body.as_bytes()).unwrap();
        assert!(p.input_reserve >= 10_006, "{}", p.input_reserve);
    }

    #[test]
    fn output_cap_is_added_under_the_field_each_api_reads() {
        let body = br#"{"model":"m","messages":[]}"#;
        let capped = |m| {
            serde_json::from_slice::<Value>(
                &with_output_cap(m, body, 64, "max_completion_tokens").unwrap(),
            )
            .unwrap()
        };
        assert_eq!(capped(Meter::ChatCompletions)["max_completion_tokens"], 64);
        assert_eq!(capped(Meter::Messages)["max_tokens"], 64);
        assert_eq!(capped(Meter::Responses)["max_output_tokens"], 64);
        assert_eq!(
            with_output_cap(Meter::Embeddings, body, 64, "max_tokens"),
            None
        );
    }

    #[test]
    fn other_paths_are_plain_requests() {
        let p = prepare("/v1/models", b"").unwrap();
        assert_eq!(
            (p.meter, p.meter.by_tokens(), p.model.as_str()),
            (Meter::Request, false, "")
        );
    }
}
