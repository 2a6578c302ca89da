//! A fake OpenAI/Anthropic upstream on 127.0.0.1 with deterministic usage, so tests can
//! predict exactly what edgemeter must meter. HTTP/1.1 with keep-alive; streams are
//! sent chunked, one SSE event per chunk.
//!
//! It behaves like ONE provider account shared by every customer: each answer carries
//! the operator's account headers, error messages name the operator's organization,
//! and files and stored responses live in one store anyone with the key can read.
//!
//! Request headers steer it: `x-fake-status: 500` forces a status, `x-fake-delay-ms: N`
//! pauses between streamed events, `x-test-tag: T` labels requests for counting,
//! `x-fake-size: N` pads a chat completion to N bytes, `x-fake-chunked: 1` sends it
//! chunked with no length, `x-fake-break: 1` hangs up halfway through it, `x-fake-redirect: 1` answers 307,
//! `x-fake-stream-error: 1` ends a streamed chat with an error event naming the account.

#[path = "upstream_account.rs"]
pub mod account;
#[path = "upstream_bodies.rs"]
mod bodies;

use super::wire::{read_request, Incoming};
use account::{response_events, Account, Answer};
use bodies::{chat, pad, usage_of};
pub use bodies::{chat_stream, choices, completion_tokens, prompt_tokens};
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Prompt tokens the fake reports for every request, of which `CACHED_TOKENS` cached.
pub const PROMPT_TOKENS: u64 = 21;
pub const CACHED_TOKENS: u64 = 5;
pub const EMBEDDING_TOKENS: u64 = 8;

/// Headers of the operator's provider account, on every answer the fake sends: none
/// of them may reach a customer.
pub const OPERATOR_HEADERS: [(&str, &str); 7] = [
    ("openai-organization", "org-operator123"),
    ("openai-project", "proj_operator123"),
    ("x-ratelimit-remaining-requests", "4999"),
    ("anthropic-organization-id", "org-anthropic-operator"),
    ("anthropic-ratelimit-requests-remaining", "99"),
    ("set-cookie", "__cf_bm=operator"),
    ("x-request-id", "req_fake"),
];

/// Where a followed redirect would lead.
pub const REDIRECT_TARGET: &str = "/v1/redirected-secret";

/// What one image costs in the fake, as the most a provider may bill: the test
/// catalog's `image_input_tokens` for gpt-4o-mini.
pub const IMAGE_TOKENS: u64 = 300;

/// Audio tokens the fake bills for a prompt with inline audio.
pub const AUDIO_TOKENS: u64 = 50;

/// One request as the fake saw it (header names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub tag: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub struct FakeUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeUpstream {
    /// Starts on a free loopback port (or `port` when non-zero).
    pub fn start(port: u16) -> FakeUpstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake upstream");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let account = Arc::new(Mutex::new(Account::default()));
        let shared = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (seen, account) = (shared.clone(), account.clone());
                thread::spawn(move || serve(conn, seen, account));
            }
        });
        FakeUpstream { port, seen }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen with a tag.
    pub fn tagged(&self, tag: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.tag.as_deref() == Some(tag))
            .cloned()
            .collect()
    }

    /// Every request seen so far.
    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The raw path (query included) of every request seen so far.
    pub fn paths(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|s| s.path.clone()).collect()
    }
}

fn serve(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, account: Arc<Mutex<Account>>) {
    // Responses go out in several writes: without this, Nagle's algorithm would hold
    // each tail for the peer's delayed ACK (about 40 ms).
    let _ = conn.set_nodelay(true);
    let mut out = conn.try_clone().expect("clone stream");
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        seen.lock().unwrap().push(Seen {
            method: req.method.clone(),
            path: req.path.clone(),
            authorization: req.header("authorization"),
            tag: req.header("x-test-tag"),
            headers: req.headers.clone(),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        });
        if respond(&mut out, &req, &account).is_err() {
            return;
        }
    }
}

fn send(
    out: &mut TcpStream,
    status: u16,
    extra: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in OPERATOR_HEADERS.iter().chain(extra) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn send_json(out: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    send(
        out,
        status,
        &[],
        "application/json",
        body.to_string().as_bytes(),
    )
}

/// The error a forced status answers with: like the real provider's, it names the
/// operator's organization, project or key where the real one does.
fn forced(status: u16) -> Value {
    let (message, kind, code, param) = match status {
        429 => ("Rate limit reached for gpt-4o-mini in organization org-operator123 on requests per min (RPM): Limit 500, Used 499. Key sk-upst***cret",
            "requests", Some("rate_limit_exceeded"), None),
        401 | 403 => ("Incorrect API key provided: sk-upst***cret. You can find your API key at https://platform.openai.com/account/api-keys (organization org-operator123).",
            "invalid_request_error", Some("invalid_api_key"), None),
        400 => ("Invalid value for 'temperature' in project proj_operator123",
            "invalid_request_error", Some("invalid_value"), Some("temperature")),
        _ => ("forced by test", "server_error", None, None),
    };
    json!({"error": {"message": message, "type": kind, "code": code, "param": param}})
}

fn respond(out: &mut TcpStream, req: &Incoming, account: &Mutex<Account>) -> std::io::Result<()> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Some(status) = req
        .header("x-fake-status")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let retry: &[(&str, &str)] = if status == 429 {
            &[("retry-after", "7")]
        } else {
            &[]
        };
        let err = forced(status).to_string();
        return send(out, status, retry, "application/json", err.as_bytes());
    }
    if req.header("x-fake-redirect").is_some() {
        return send(
            out,
            307,
            &[("location", REDIRECT_TARGET)],
            "text/plain",
            b"",
        );
    }
    let model = body["model"].as_str().unwrap_or("none").to_string();
    let path = req.path.split('?').next().unwrap_or("");
    let delay = req
        .header("x-fake-delay-ms")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let answer = account.lock().unwrap().handle(req, path);
    if let Some(Answer {
        status,
        content_type,
        body,
    }) = answer
    {
        return send(out, status, &[], content_type, &body);
    }
    match (req.method.as_str(), path) {
        ("POST", "/v1/chat/completions") if body["stream"] == true => {
            let mut events = chat_stream(
                &model,
                completion_tokens(&body),
                body["stream_options"]["include_usage"] == true,
            );
            if req.header("x-fake-stream-error").is_some() {
                // A provider failing mid-stream, after its 200, in the shape it uses.
                let err = json!({"error": {"message": "Rate limit reached for gpt-4o-mini in organization org-operator123 on tokens per min (TPM)",
                    "type": "tokens", "code": "rate_limit_exceeded", "param": null}});
                events.truncate(2);
                events.push(format!("data: {err}\n\n"));
            }
            stream(out, &events, delay)
        }
        ("POST", "/v1/chat/completions") => {
            // Every choice generates up to the cap, and all of it is billed.
            let mut done = chat(&model, completion_tokens(&body));
            let n = completion_tokens(&body) * choices(&body);
            done["usage"] = usage_of(prompt_tokens(&body), n);
            if body.to_string().contains("\"input_audio\"") {
                // 50 of the prompt's tokens were audio
                done["usage"]["prompt_tokens"] = json!(PROMPT_TOKENS + AUDIO_TOKENS);
                done["usage"]["prompt_tokens_details"]["audio_tokens"] = json!(AUDIO_TOKENS);
            }
            if let Some(size) = req.header("x-fake-size").and_then(|s| s.parse().ok()) {
                pad(&mut done, size);
            }
            if req.header("x-fake-break").is_some() {
                return broken(out, &done.to_string());
            }
            if req.header("x-fake-chunked").is_some() {
                let text = done.to_string();
                let pieces: Vec<String> = text
                    .as_bytes()
                    .chunks(64)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                return chunked(out, "application/json", &pieces, 0);
            }
            send_json(out, 200, &done)
        }
        ("POST", "/v1/messages") => {
            // Anthropic's shape: cache reads and writes beside `input_tokens`, the
            // writes broken down by how long they stay cached.
            let usage = json!({"input_tokens": 10, "cache_read_input_tokens": 20,
                "cache_creation_input_tokens": 100,
                "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40},
                "output_tokens": completion_tokens(&body)});
            send_json(
                out,
                200,
                &json!({"id": "msg_fake", "type": "message", "role": "assistant",
                "model": model, "content": [{"type": "text", "text": "tok0 "}],
                "stop_reason": "end_turn", "stop_sequence": null, "usage": usage}),
            )
        }
        ("POST", "/v1/completions") => {
            let n = completion_tokens(&body) * choices(&body);
            send_json(
                out,
                200,
                &json!({"id": "cmpl-fake", "object": "text_completion", "created": 1,
                "model": model, "choices": [{"index": 0, "text": "tok0 ", "finish_reason": "length"}],
                "usage": usage_of(PROMPT_TOKENS, n)}),
            )
        }
        ("POST", "/v1/embeddings") => send_json(
            out,
            200,
            &json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": model, "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}}),
        ),
        ("POST", "/v1/responses") => {
            let created = account
                .lock()
                .unwrap()
                .create_response(&body, completion_tokens(&body));
            match created {
                Err(a) => send(out, a.status, &[], a.content_type, &a.body),
                Ok(done) if body["stream"] == true => stream(out, &response_events(&done), delay),
                Ok(done) => send_json(out, 200, &done),
            }
        }
        // edgemeter must never let these through: the answers prove it if it did
        ("POST", "/v1/batches") => {
            send_json(out, 200, &json!({"id": "batch_1", "object": "batch"}))
        }
        (_, REDIRECT_TARGET) => send_json(out, 200, &json!({"secret": "redirect followed"})),
        _ => send_json(
            out,
            200,
            &json!({"object": "list", "data": [], "path": path}),
        ),
    }
}

/// Declares twice the body's length, sends the body and hangs up: an answer that
/// breaks off.
fn broken(out: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        2 * body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Both);
    Err(std::io::Error::other("the answer broke off"))
}

/// Each event goes out in one write, as a provider sends it (`write!` on the socket
/// itself would send its pieces as separate segments).
fn stream(out: &mut TcpStream, events: &[String], delay_ms: u64) -> std::io::Result<()> {
    chunked(out, "text/event-stream", events, delay_ms)
}

/// A 200 of `content_type` sent chunked, a chunk per piece.
fn chunked(
    out: &mut TcpStream,
    content_type: &str,
    pieces: &[String],
    delay_ms: u64,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n{}\r\n",
        OPERATOR_HEADERS
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect::<String>()
    );
    out.write_all(head.as_bytes())?;
    for e in pieces {
        out.write_all(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes())?;
        out.flush()?;
        if delay_ms > 0 {
            thread::sleep(Duration::from_millis(delay_ms));
        }
    }
    write!(out, "0\r\n\r\n")?;
    out.flush()
}
