//! The state of the fake's one provider account: files and stored responses, shared by
//! every customer edgemeter forwards, as a real operator account is. Whatever one
//! customer creates here, any request with the operator key can list, read or delete,
//! so edgemeter has to keep customers apart itself.

use super::{Incoming, CACHED_TOKENS, PROMPT_TOKENS};
use serde_json::{json, Value};
use std::collections::HashMap;

/// An uploaded file of this name is answered with an id no record can be made of.
pub const UNREADABLE_ID: &str = "answered-with-an-odd-id.txt";

#[derive(Default)]
pub struct Account {
    next: u64,
    /// In upload order: (file object, content).
    files: Vec<(Value, Vec<u8>)>,
    responses: HashMap<String, Value>,
}

/// What the fake sends back: status, content type and body.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn json_answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
    }
}

fn not_found(message: String, param: Option<&str>) -> Answer {
    json_answer(
        404,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}}),
    )
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Account {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn file(&self, id: &str) -> Option<&(Value, Vec<u8>)> {
        self.files.iter().find(|(f, _)| f["id"] == id)
    }

    /// Answers the files and stored-responses API, or `None` for any other request.
    pub fn handle(&mut self, req: &Incoming, path: &str) -> Option<Answer> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = req.method.as_str();
        Some(match (method, parts.as_slice()) {
            ("POST", ["v1", "files"]) => self.upload(req),
            ("GET", ["v1", "files"]) => {
                let data: Vec<Value> = self.files.iter().map(|(f, _)| f.clone()).collect();
                json_answer(
                    200,
                    json!({"object": "list", "data": data, "has_more": false}),
                )
            }
            (_, ["v1", "files", id, rest @ ..]) => {
                let Some((file, content)) = self.file(id).cloned() else {
                    return Some(not_found(format!("No such File object: {id}"), Some("id")));
                };
                match (method, rest) {
                    ("GET", []) => json_answer(200, file),
                    ("GET", ["content"]) => Answer {
                        status: 200,
                        content_type: "application/octet-stream",
                        body: content,
                    },
                    ("DELETE", []) => {
                        self.files.retain(|(f, _)| f["id"] != *id);
                        json_answer(200, json!({"id": id, "object": "file", "deleted": true}))
                    }
                    _ => return None,
                }
            }
            (_, ["v1", "responses", id, rest @ ..]) => {
                let Some(stored) = self.responses.get(*id).cloned() else {
                    return Some(not_found(
                        format!("Response with id '{id}' not found."),
                        None,
                    ));
                };
                match (method, rest) {
                    ("GET", []) => json_answer(200, stored),
                    ("GET", ["input_items"]) => json_answer(
                        200,
                        json!({"object": "list", "data": [], "has_more": false}),
                    ),
                    ("DELETE", []) => {
                        self.responses.remove(*id);
                        json_answer(
                            200,
                            json!({"id": id, "object": "response", "deleted": true}),
                        )
                    }
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    fn upload(&mut self, req: &Incoming) -> Answer {
        let Some(parts) = multipart(req) else {
            return json_answer(
                400,
                json!({"error": {"message": "expected multipart/form-data", "type": "invalid_request_error", "param": null, "code": null}}),
            );
        };
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let purpose = field("purpose").map(|p| String::from_utf8_lossy(&p.content).into_owned());
        let (Some(purpose), Some(file)) = (purpose, field("file")) else {
            return json_answer(
                400,
                json!({"error": {"message": "purpose and file are required", "type": "invalid_request_error", "param": "file", "code": null}}),
            );
        };
        let id = self.id("file-");
        let object = json!({"id": id, "object": "file", "bytes": file.content.len(), "created_at": now(),
            "filename": file.filename.clone().unwrap_or_default(), "purpose": purpose, "status": "processed"});
        self.files.push((object.clone(), file.content.clone()));
        if file.filename.as_deref() == Some(UNREADABLE_ID) {
            // A provider answer edgemeter cannot take an id from: the file is stored,
            // but its id comes back in a shape no record can be made of.
            let mut odd = object;
            odd["id"] = json!(format!("{id}/../other"));
            return json_answer(200, odd);
        }
        json_answer(200, object)
    }

    /// Creates a response (stored unless `store` is false): `Err` is the 404 for an
    /// unknown `previous_response_id`.
    pub fn create_response(&mut self, body: &Value, n: u64) -> Result<Value, Answer> {
        let previous = body["previous_response_id"].as_str();
        if let Some(prev) = previous {
            if !self.responses.contains_key(prev) {
                return Err(not_found(
                    format!("Previous response with id '{prev}' not found."),
                    Some("previous_response_id"),
                ));
            }
        }
        // The previous response's conversation is read again, and billed as input.
        let carried = previous.and_then(|p| self.responses.get(p)).map_or(0, |r| {
            let u = &r["usage"];
            u["input_tokens"].as_u64().unwrap_or(0) + u["output_tokens"].as_u64().unwrap_or(0)
        });
        let input = PROMPT_TOKENS + carried;
        let (id, msg) = (self.id("resp_"), self.id("msg_"));
        let text: String = (0..n).map(|i| format!("tok{i} ")).collect();
        let response = json!({"id": id, "object": "response", "created_at": now(), "status": "completed",
            "model": body["model"], "previous_response_id": previous,
            "output": [{"type": "message", "id": msg, "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": input,
                "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
                "output_tokens": n, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input + n}});
        if body["store"] != false {
            self.responses.insert(id, response.clone());
        }
        Ok(response)
    }
}

/// The SSE events of a streamed response, `response.created` to `response.completed`.
pub fn response_events(done: &Value) -> Vec<String> {
    let event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        format!("event: {kind}\ndata: {data}\n\n")
    };
    let mut started = done.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    let mut events = vec![event("response.created", json!({"response": started}))];
    let text = done["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    for piece in text.split_inclusive(' ') {
        events.push(event(
            "response.output_text.delta",
            json!({"item_id": done["output"][0]["id"], "output_index": 0, "content_index": 0, "delta": piece}),
        ));
    }
    events.push(event("response.completed", json!({"response": done})));
    events
}

struct Part {
    name: String,
    filename: Option<String>,
    content: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `name="value"` (or unquoted) from a Content-Disposition header.
fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart/form-data body.
fn multipart(req: &Incoming) -> Option<Vec<Part>> {
    let boundary = param(&req.header("content-type")?, "boundary")?;
    let delim = format!("--{boundary}").into_bytes();
    let body = &req.body;
    let mut at = find(body, &delim, 0)? + delim.len();
    let mut parts = Vec::new();
    while !body[at..].starts_with(b"--") {
        let head_start = at + 2; // past CRLF
        let head_end = find(body, b"\r\n\r\n", head_start)?;
        let next = find(body, &format!("\r\n--{boundary}").into_bytes(), head_end)?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]);
        let disposition = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))?
            .1
            .to_string();
        parts.push(Part {
            name: param(&disposition, "name")?,
            filename: param(&disposition, "filename"),
            content: body[head_end + 4..next].to_vec(),
        });
        at = next + 2 + delim.len();
    }
    Some(parts)
}
