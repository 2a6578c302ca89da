//! What a body asks of the provider beyond tokens, and which stored resources it
//! names. Server-side tools, paid tiers and audio output are billed outside the token
//! usage edgemeter meters, so they are refused; every file or response id a body names
//! must be the caller's own.

use super::ResourceKind;
use crate::error::ApiError;
use crate::request::Meter;
use serde_json::{Map, Value};

fn refuse(field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", msg).with_param(field)
}

/// Tool types a request may declare: tools the client runs itself. Server-side tools
/// (web and file search, code interpreter, image generation, Anthropic's server tools)
/// are billed by the provider outside the token usage edgemeter meters.
const CLIENT_TOOLS: [&str; 3] = ["function", "custom", "text"];

/// Keys inside a body that name account-wide state no owner record covers.
const ACCOUNT_STATE: [&str; 3] = ["vector_store_ids", "container", "conversation"];

fn unsupported(field: &str, msg: impl Into<String>) -> ApiError {
    refuse(field, msg).with_code("unsupported_parameter")
}

/// Checks what a sanitized body asks the provider for beyond tokens, and returns the
/// stored resources it references (file ids anywhere, `previous_response_id`), which
/// the caller must own. Server-side tools, a paid `service_tier`, audio output and
/// references to account-wide state are refused.
pub fn check(
    meter: Meter,
    body: &Map<String, Value>,
) -> Result<Vec<(ResourceKind, String)>, ApiError> {
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = tool.get("type").and_then(Value::as_str);
        let client_side = match meter {
            Meter::Messages => kind.is_none_or(|k| k == "custom"),
            _ => kind.is_some_and(|k| CLIENT_TOOLS.contains(&k)),
        };
        if !client_side {
            let msg = format!(
                "The tool type `{}` runs on the provider and is billed outside token usage; it is not available.",
                kind.unwrap_or("?")
            );
            return Err(unsupported("tools", msg));
        }
    }
    match body.get("service_tier") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "auto" || t == "default" || t == "standard_only" => {}
        Some(_) => {
            let msg =
                "Only the default `service_tier` is available: other tiers are priced differently.";
            return Err(unsupported("service_tier", msg));
        }
    }
    let audio_out = body
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|v| v == "audio"));
    if audio_out {
        return Err(unsupported("modalities", "Audio output is not available."));
    }
    let mut files = Vec::new();
    walk(body, &mut files)?;
    let mut refs: Vec<_> = files
        .into_iter()
        .map(|id| (ResourceKind::File, id))
        .collect();
    match body.get("previous_response_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => refs.push((ResourceKind::Response, id.clone())),
        Some(_) => {
            let msg = "`previous_response_id` must be a string.";
            return Err(refuse("previous_response_id", msg));
        }
    }
    Ok(refs)
}

/// Collects `file_id` strings anywhere in the body; refuses item references and
/// account-wide state.
fn walk(map: &Map<String, Value>, files: &mut Vec<String>) -> Result<(), ApiError> {
    if map.get("type").and_then(Value::as_str) == Some("item_reference") {
        return Err(unsupported("input", "Item references are not available."));
    }
    for (key, value) in map {
        if ACCOUNT_STATE.contains(&key.as_str()) && !value.is_null() {
            let msg = format!("`{key}` names provider state that is not available here.");
            return Err(unsupported(key, msg));
        }
        if key == "file_id" {
            match value {
                Value::String(id) => files.push(id.clone()),
                Value::Null => {}
                _ => return Err(refuse("file_id", "`file_id` must be a string.")),
            }
        }
        walk_value(value, files)?;
    }
    Ok(())
}

fn walk_value(value: &Value, files: &mut Vec<String>) -> Result<(), ApiError> {
    match value {
        Value::Object(m) => walk(m, files),
        Value::Array(items) => items.iter().try_for_each(|v| walk_value(v, files)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_tools_paid_tiers_audio_and_account_state_are_refused() {
        let refs = |meter, body: Value| check(meter, body.as_object().unwrap());
        let fine = json!({"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}],
            "previous_response_id": "resp_1",
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]});
        assert_eq!(
            refs(Meter::Responses, fine).unwrap(),
            [
                (ResourceKind::File, "file-1".to_string()),
                (ResourceKind::Response, "resp_1".to_string())
            ]
        );
        let e = refs(Meter::Responses, json!({"previous_response_id": 7})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
        for (meter, body, param) in [
            (
                Meter::Responses,
                json!({"tools": [{"type": "web_search"}]}),
                "tools",
            ),
            (
                Meter::Responses,
                json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
                "tools",
            ),
            (
                Meter::Messages,
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools",
            ),
            (
                Meter::ChatCompletions,
                json!({"service_tier": "priority"}),
                "service_tier",
            ),
            (
                Meter::ChatCompletions,
                json!({"modalities": ["text", "audio"]}),
                "modalities",
            ),
            (
                Meter::Responses,
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input",
            ),
            (
                Meter::Responses,
                json!({"x": {"vector_store_ids": ["vs_1"]}}),
                "vector_store_ids",
            ),
        ] {
            let e = refs(meter, body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)));
        }
        // Anthropic client tools have no type, or `custom`
        let client = json!({"tools": [{"name": "f", "input_schema": {}}]});
        assert!(refs(Meter::Messages, client).unwrap().is_empty());
    }
}
