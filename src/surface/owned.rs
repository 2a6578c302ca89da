//! Stored provider resources as their owner's counter keeps them. The provider account
//! is shared by every customer, so its own lists would show everyone's files: lists
//! are served from these records instead, and every other operation on an id is
//! forwarded only when the caller's counter holds it.

use super::ResourceKind;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One resource created through a customer's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedResource {
    pub kind: ResourceKind,
    pub id: String,
    pub created_ms: i64,
    /// The provider's object as it was returned at creation (files are listed from it).
    #[serde(default)]
    pub object: Value,
    #[serde(default)]
    pub purpose: String,
    #[serde(default)]
    pub bytes: u64,
    /// A stored response's tokens: a later `previous_response_id` carries them as input.
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
}

/// The largest provider object kept with a record; a bigger one keeps only its id.
const OBJECT_LIMIT: usize = 8 * 1024;

impl OwnedResource {
    /// The record of a response known so far only by its id (from a stream's
    /// `response.created` event); its tokens arrive at settlement.
    pub fn response(id: &str, now_ms: i64) -> Option<OwnedResource> {
        super::valid_id(id).then(|| OwnedResource {
            kind: ResourceKind::Response,
            id: id.to_string(),
            created_ms: now_ms,
            object: json!({"id": id}),
            purpose: String::new(),
            bytes: 0,
            input: 0,
            output: 0,
        })
    }

    /// The record of a resource the provider just created, from its JSON answer.
    pub fn created(kind: ResourceKind, answer: &[u8], now_ms: i64) -> Option<OwnedResource> {
        let object: Value = serde_json::from_slice(answer).ok()?;
        let id = object["id"]
            .as_str()
            .filter(|id| super::valid_id(id))?
            .to_string();
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        let usage = &object["usage"];
        let (input, output) = (
            count(&usage["input_tokens"]),
            count(&usage["output_tokens"]),
        );
        let kept = match kind {
            ResourceKind::File if object.to_string().len() <= OBJECT_LIMIT => object.clone(),
            _ => json!({"id": id}),
        };
        Some(OwnedResource {
            kind,
            id,
            created_ms: now_ms,
            purpose: object["purpose"].as_str().unwrap_or_default().to_string(),
            bytes: count(&object["bytes"]),
            object: kept,
            input,
            output,
        })
    }
}

/// `GET /v1/files` parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: usize,
    pub ascending: bool,
    pub purpose: Option<String>,
}

/// OpenAI's default and largest page of files.
const MAX_LIMIT: usize = 10_000;

impl ListQuery {
    pub fn parse(query: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            limit: MAX_LIMIT,
            ..ListQuery::default()
        };
        for (name, value) in query {
            match name.as_str() {
                "after" => q.after = Some(value.clone()),
                "purpose" => q.purpose = Some(value.clone()),
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request("invalid_value", "`limit` must be 1 to 10000.")
                                .with_param("limit")
                        })?
                }
                "order" => {
                    q.ascending = match value.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            let msg = "`order` must be `asc` or `desc`.";
                            return Err(
                                ApiError::bad_request("invalid_value", msg).with_param("order")
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// One page of a customer's files, in OpenAI's list shape.
pub fn page(mut files: Vec<OwnedResource>, q: &ListQuery) -> Value {
    files.retain(|f| q.purpose.as_ref().is_none_or(|p| *p == f.purpose));
    files.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    if !q.ascending {
        files.reverse();
    }
    let start = match &q.after {
        Some(after) => files
            .iter()
            .position(|f| f.id == *after)
            .map_or(files.len(), |i| i + 1),
        None => 0,
    };
    let rest = &files[start..];
    let shown = &rest[..rest.len().min(q.limit)];
    let data: Vec<Value> = shown.iter().map(|f| f.object.clone()).collect();
    json!({
        "object": "list",
        "data": data,
        "first_id": shown.first().map(|f| f.id.clone()),
        "last_id": shown.last().map(|f| f.id.clone()),
        "has_more": rest.len() > shown.len(),
    })
}

/// How far into a Responses stream its `response.created` event is looked for.
pub const PEEK_LIMIT: usize = 64 * 1024;

/// Looks for a Responses stream's id, in its `response.created` event, before the
/// client sees any of it: the response is recorded for its owner first.
#[derive(Default)]
pub struct CreatedPeek {
    scanner: crate::sse::SseScanner,
    seen: usize,
}

/// What a peek found so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    Found(String),
    More,
    /// Not within [`PEEK_LIMIT`]: the response is answered and metered, but never
    /// recorded, so no one can read it back through edgemeter.
    GiveUp,
}

impl CreatedPeek {
    pub fn push(&mut self, chunk: &[u8]) -> Peeked {
        self.seen += chunk.len();
        let id = self.scanner.push(chunk).iter().find_map(|event| {
            let data = crate::sse::event_data(event)?;
            let v: Value = serde_json::from_str(&data).ok()?;
            (v["type"] == "response.created")
                .then(|| v["response"]["id"].as_str().map(String::from))?
        });
        match id {
            Some(id) => Peeked::Found(id),
            None if self.seen > PEEK_LIMIT => Peeked::GiveUp,
            None => Peeked::More,
        }
    }
}

/// Whether the provider's answer to a deletion says the resource is gone: only then is
/// its record forgotten, so a refused deletion leaves it manageable by its owner.
pub fn deletion_confirmed(answer: &[u8]) -> bool {
    serde_json::from_slice::<Value>(answer).is_ok_and(|v| v["deleted"] == Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, at: i64, purpose: &str) -> OwnedResource {
        let answer = json!({"id": id, "object": "file", "bytes": 5, "purpose": purpose});
        OwnedResource::created(ResourceKind::File, answer.to_string().as_bytes(), at).unwrap()
    }

    fn ids(v: &Value) -> Vec<&str> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn pages_follow_order_after_and_limit() {
        let files = vec![
            file("file-a", 1, "user_data"),
            file("file-b", 2, "user_data"),
            file("file-c", 3, "vision"),
        ];
        let q = |s: &str| {
            let pairs: Vec<(String, String)> = s
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ListQuery::parse(&pairs).unwrap()
        };
        let first = page(files.clone(), &q("limit=2&order=asc"));
        assert_eq!(ids(&first), ["file-a", "file-b"]);
        assert_eq!(
            (first["has_more"].as_bool(), first["last_id"].as_str()),
            (Some(true), Some("file-b"))
        );
        let next = page(files.clone(), &q("limit=2&order=asc&after=file-b"));
        assert_eq!(
            (ids(&next), next["has_more"].as_bool()),
            (vec!["file-c"], Some(false))
        );
        assert_eq!(
            ids(&page(files.clone(), &q("order=desc"))),
            ["file-c", "file-b", "file-a"]
        );
        assert_eq!(ids(&page(files.clone(), &q("purpose=vision"))), ["file-c"]);
        assert_eq!(ids(&page(files, &q("after=file-zzz"))).len(), 0);
        assert!(ListQuery::parse(&[("limit".into(), "0".into())]).is_err());
    }

    #[test]
    fn a_created_response_keeps_its_tokens_and_a_bad_answer_nothing() {
        let answer =
            br#"{"id":"resp_1","usage":{"input_tokens":21,"output_tokens":7},"output":[]}"#;
        let r = OwnedResource::created(ResourceKind::Response, answer, 5).unwrap();
        assert_eq!((r.id.as_str(), r.input, r.output), ("resp_1", 21, 7));
        assert_eq!(
            OwnedResource::created(ResourceKind::File, br#"{"id":"../x"}"#, 0),
            None
        );
        assert_eq!(OwnedResource::created(ResourceKind::File, b"nope", 0), None);
        let streamed = OwnedResource::response("resp_2", 9).unwrap();
        assert_eq!(
            (streamed.kind, streamed.created_ms),
            (ResourceKind::Response, 9)
        );
        assert_eq!(OwnedResource::response("../x", 9), None);
    }

    #[test]
    fn a_deletion_changes_the_record_only_when_confirmed() {
        assert!(deletion_confirmed(
            br#"{"id": "file-abc", "deleted": true}"#
        ));
        assert!(!deletion_confirmed(
            br#"{"id": "file-abc", "deleted": false}"#
        ));
        assert!(!deletion_confirmed(br#"{"deleted": "true"}"#));
        assert!(!deletion_confirmed(b"<html>"));
    }

    #[test]
    fn a_streams_id_is_found_across_chunks_or_given_up_past_the_limit() {
        let mut peek = CreatedPeek::default();
        let event = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\"}}\n\n";
        let (a, b) = event.split_at(30);
        assert_eq!(peek.push(a), Peeked::More);
        assert_eq!(peek.push(b), Peeked::Found("resp_1".into()));
        let mut long = CreatedPeek::default();
        let filler = b"data: {\"type\":\"keepalive\"}\n\n".repeat(PEEK_LIMIT / 16);
        assert_eq!(long.push(&filler), Peeked::GiveUp);
    }
}
