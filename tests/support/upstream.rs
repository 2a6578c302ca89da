//! A fake OpenAI/Anthropic upstream on 127.0.0.1 with deterministic usage, so tests can
//! predict exactly what edgemeter must meter. HTTP/1.1 with keep-alive; streams are
//! sent chunked, one SSE event per chunk.
//!
//! Request headers steer it: `x-fake-status: 500` forces a status, `x-fake-delay-ms: N`
//! pauses between streamed events, `x-test-tag: T` labels requests for counting.

use super::wire::{read_request, Incoming};
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

/// Completion tokens for a request: its `max_tokens`, else 7, never more than 50.
pub fn completion_tokens(body: &Value) -> u64 {
    let cap = body["max_completion_tokens"]
        .as_u64()
        .or(body["max_tokens"].as_u64());
    cap.unwrap_or(7).min(50)
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
    pub tag: Option<String>,
    pub body: String,
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
        let shared = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = shared.clone();
                thread::spawn(move || serve(conn, seen));
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
}

fn serve(conn: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    // Responses go out in several writes: without this, Nagle's algorithm would hold
    // each tail for the peer's delayed ACK (about 40 ms).
    let _ = conn.set_nodelay(true);
    let mut out = conn.try_clone().expect("clone stream");
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        seen.lock().unwrap().push(Seen {
            path: req.path.clone(),
            authorization: req.header("authorization"),
            tag: req.header("x-test-tag"),
            body: String::from_utf8_lossy(&req.body).into_owned(),
        });
        if respond(&mut out, &req).is_err() {
            return;
        }
    }
}

fn send_json(out: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        out,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}

fn respond(out: &mut TcpStream, req: &Incoming) -> std::io::Result<()> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Some(status) = req
        .header("x-fake-status")
        .and_then(|s| s.parse::<u16>().ok())
    {
        let err = json!({"error": {"message": "forced by test", "type": "server_error", "code": null, "param": null}});
        return send_json(out, status, &err);
    }
    let model = body["model"].as_str().unwrap_or("none").to_string();
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("POST", "/v1/chat/completions") if body["stream"] == true => {
            let delay = req
                .header("x-fake-delay-ms")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let events = chat_stream(
                &model,
                completion_tokens(&body),
                body["stream_options"]["include_usage"] == true,
            );
            stream(out, &events, delay)
        }
        ("POST", "/v1/chat/completions") => {
            send_json(out, 200, &chat(&model, completion_tokens(&body)))
        }
        ("POST", "/v1/embeddings") => send_json(
            out,
            200,
            &json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "model": model, "usage": {"prompt_tokens": EMBEDDING_TOKENS, "total_tokens": EMBEDDING_TOKENS}}),
        ),
        _ => send_json(
            out,
            200,
            &json!({"object": "list", "data": [], "path": path}),
        ),
    }
}

fn usage(n: u64) -> Value {
    json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": PROMPT_TOKENS + n,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}, "completion_tokens_details": {"reasoning_tokens": 0}})
}

fn chat(model: &str, n: u64) -> Value {
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

fn stream(out: &mut TcpStream, events: &[String], delay_ms: u64) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )?;
    for e in events {
        write!(out, "{:x}\r\n{e}\r\n", e.len())?;
        out.flush()?;
        if delay_ms > 0 {
            thread::sleep(Duration::from_millis(delay_ms));
        }
    }
    write!(out, "0\r\n\r\n")?;
    out.flush()
}
