//! Reading a client's request before it goes upstream: which meter it belongs to, the
//! model, whether it streams, what to reserve, and the body to forward (with
//! `stream_options.include_usage` switched on so a stream always reports its usage).

use crate::error::ApiError;
pub use crate::prompt_size::{CacheWrites, Media};
use crate::usage::{Anthropic, OpenAi, UsageAdapter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// The part of `input_reserve` that is audio, once the model's bounds are applied.
    pub audio_reserve: u64,
    /// Prompt-cache writes the request asks for: its input may bill above the plain rate.
    pub cache_writes: CacheWrites,
    /// Output reserved beyond the cap: a predicted output's rejected tokens bill as
    /// output (one a byte at most).
    pub output_extra: u64,
    /// The model's most output tokens, once known: caps above it are reserved at it.
    pub max_output: Option<u64>,
    /// The body to send upstream; `None` means forward the client's bytes unchanged.
    pub upstream_body: Option<Vec<u8>>,
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
    if let Some(spliced) = splice_cap(body, field, cap) {
        return Some(spliced);
    }
    let mut json: Map<String, Value> = serde_json::from_slice(body).ok()?;
    json.insert(field.to_string(), Value::from(cap));
    serde_json::to_vec(&json).ok()
}

/// The cap written in front of an object's first member, without parsing the body
/// again (it was parsed in preparing it): only when no cap's name appears anywhere in
/// it, so the object gets no second member of that name. `None`: parse it instead.
fn splice_cap(body: &[u8], field: &str, cap: u64) -> Option<Vec<u8>> {
    let rest = body.strip_prefix(b"{")?;
    let quoted_at = |i: usize, name: &str| {
        let after = &body[i + 1..];
        after.starts_with(name.as_bytes()) && after.get(name.len()) == Some(&b'"')
    };
    let mut quotes = (0..body.len()).filter(|&i| body[i] == b'"');
    if quotes.any(|i| CAP_FIELDS.iter().chain([&field]).any(|n| quoted_at(i, n))) {
        return None;
    }
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let member = format!("{{\"{field}\":{cap}{}", if empty { "" } else { "," });
    Some([member.as_bytes(), rest].concat())
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

/// Lowers every spelling of a cap above the model's maximum output to it, after
/// refusing spellings that disagree: the provider is sent no cap above what was
/// reserved, whatever its own limit turns out to be.
pub fn clamp_caps(json: &mut Map<String, Value>, max: u64) -> Result<(), ApiError> {
    output_cap(json)?;
    for field in CAP_FIELDS {
        if json
            .get(field)
            .and_then(Value::as_u64)
            .is_some_and(|cap| cap > max)
        {
            json.insert(field.to_string(), Value::from(max));
        }
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
            audio_reserve: 0,
            cache_writes: CacheWrites::None,
            output_extra: 0,
            max_output: None,
            upstream_body: None,
        }
    }
}

impl Prepared {
    /// What the counter is asked to reserve for this request.
    pub fn ask(&self) -> AdmitAsk {
        AdmitAsk {
            meter: self.meter.name().to_string(),
            model: self.model.clone(),
            input_estimate: self.input_estimate,
            input_reserve: self.input_reserve,
            output_cap: self.output_cap,
            choices: self.choices,
            unbounded: self.media.unbounded.map(String::from),
            max_output: self.max_output,
            audio_reserve: self.audio_reserve,
            cache_writes: self.cache_writes,
            output_extra: self.output_extra,
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
    let prompt = crate::prompt_size::measure(&json);
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
    let upstream_body = Some(serde_json::to_vec(&json).map_err(ApiError::unexpected)?);
    Ok(Prepared {
        meter,
        model,
        stream,
        client_wants_usage: client_wants_usage || !needs_usage_option,
        input_estimate: prompt.estimate,
        input_reserve: prompt.bound,
        output_cap,
        choices: choices(&json)?,
        media: prompt.media,
        audio_reserve: 0,
        cache_writes: prompt.cache_writes,
        output_extra: prompt.prediction_bytes,
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

/// What a request asks the counter for.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdmitAsk {
    pub meter: String,
    pub model: String,
    /// Realistic input estimate, for settling a reservation nobody came back for.
    pub input_estimate: u64,
    /// Upper bound of the input tokens: what is reserved.
    pub input_reserve: u64,
    /// The request's own output cap; the plan's default is reserved when it has none.
    pub output_cap: Option<u64>,
    /// Completions the provider generates, each up to the cap: `n`, or `best_of`
    /// (every candidate is generated, `n ≤ best_of`).
    #[serde(default = "one")]
    pub choices: u64,
    /// A part of the request whose tokens cannot be bounded (a PDF, a file by id):
    /// refused under a plan with hard limits.
    #[serde(default)]
    pub unbounded: Option<String>,
    /// The model's most output tokens: no cap is reserved above it.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// The part of `input_reserve` that is audio (priced at the audio rate).
    #[serde(default)]
    pub audio_reserve: u64,
    /// Prompt-cache writes asked for: the rest of the input is reserved at that rate.
    #[serde(default)]
    pub cache_writes: CacheWrites,
    /// Output reserved beyond cap times choices (a predicted output's bytes).
    #[serde(default)]
    pub output_extra: u64,
}

fn one() -> u64 {
    1
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
