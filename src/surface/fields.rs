//! Which top-level body fields may reach the provider, route by route. A field the
//! proxy does not understand could change what a request costs (or whose data it
//! touches), so it never passes by default: it gets a 400 naming it, and the operator
//! can extend a route's list in the catalog (`proxy.body_fields`).

use crate::error::ApiError;
use crate::request::Meter;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Fields replaced by a per-customer hashed identity, so tenants sharing one provider
/// account cannot frame each other or probe each other's prompt cache.
pub const IDENTITY_FIELDS: [&str; 3] = ["user", "safety_identifier", "prompt_cache_key"];

/// Fields dropped before forwarding: provider-side metadata is the operator's, and a
/// tenant's tags there would be visible across tenants.
const DROPPED: [&str; 1] = ["metadata"];

#[rustfmt::skip]
const CHAT: &[&str] = &[
    "model", "messages", "frequency_penalty", "function_call", "functions",
    "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "reasoning_effort",
    "response_format", "seed", "service_tier", "stop", "store", "stream", "stream_options",
    "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "verbosity",
];

#[rustfmt::skip]
const COMPLETIONS: &[&str] = &[
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
    "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options",
    "suffix", "temperature", "top_p",
];

const EMBEDDINGS: &[&str] = &["model", "input", "dimensions", "encoding_format"];

#[rustfmt::skip]
const RESPONSES: &[&str] = &[
    "model", "input", "instructions", "include", "max_output_tokens", "max_tool_calls",
    "parallel_tool_calls", "previous_response_id", "reasoning", "service_tier", "store",
    "stream", "stream_options", "temperature", "text", "tool_choice", "tools",
    "top_logprobs", "top_p", "truncation", "background",
];

#[rustfmt::skip]
const MESSAGES: &[&str] = &[
    "model", "messages", "max_tokens", "stop_sequences", "stream", "system", "temperature",
    "thinking", "tool_choice", "tools", "top_k", "top_p",
];

/// The fields a metered route accepts as shipped.
pub fn allowed(meter: Meter) -> &'static [&'static str] {
    match meter {
        Meter::ChatCompletions => CHAT,
        Meter::Completions => COMPLETIONS,
        Meter::Embeddings => EMBEDDINGS,
        Meter::Responses => RESPONSES,
        Meter::Messages => MESSAGES,
        Meter::Request => &[],
    }
}

/// Whether the route has the identity fields at all (Anthropic's API has none).
fn takes_identity(meter: Meter) -> bool {
    !matches!(meter, Meter::Messages)
}

fn refuse(field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", msg).with_param(field)
}

/// Rewrites a parsed body in place into what may reach the provider, or refuses it.
/// `identity` maps a client-chosen identifier to the customer's hashed one; `extra` are
/// fields the operator allowed for this route; `stores` says whether stored responses
/// are owned for this caller (otherwise `store` is forced off).
pub fn sanitize(
    meter: Meter,
    body: &mut Map<String, Value>,
    extra: &[String],
    stores: bool,
    identity: &dyn Fn(&str) -> String,
) -> Result<(), ApiError> {
    common(body, allowed(meter), extra, takes_identity(meter), identity)?;
    if matches!(meter, Meter::ChatCompletions | Meter::Responses) {
        // Always set: abuse is then pinned on the customer, not the shared account, and
        // no tenant shares a prompt-cache key with another.
        for field in ["safety_identifier", "prompt_cache_key"] {
            if !body.contains_key(field) {
                body.insert(field.to_string(), Value::String(identity("")));
            }
        }
    }
    match meter {
        Meter::ChatCompletions => {
            // Stored chat completions would be listed to every tenant of the account,
            // whatever the account's default.
            body.insert("store".into(), Value::Bool(false));
        }
        Meter::Responses if !stores => {
            body.insert("store".into(), Value::Bool(false));
        }
        Meter::Responses => match body.get("store") {
            None | Some(Value::Bool(_)) => {}
            Some(_) => return Err(refuse("store", "`store` must be a boolean.")),
        },
        _ => {}
    }
    Ok(())
}

/// The body of a route the operator opted in: only the fields the catalog lists for it
/// pass, with the same identity and metadata rules as every route.
pub fn sanitize_optional(
    body: &mut Map<String, Value>,
    fields: &[String],
    identity: &dyn Fn(&str) -> String,
) -> Result<(), ApiError> {
    // Identity fields pass only where the operator listed them (hashed even then).
    common(body, &[], fields, false, identity)
}

/// The rules every route shares: no two keys that differ only in case, only known
/// fields, a boolean `stream`, no background work, metadata dropped, identities hashed.
fn common(
    body: &mut Map<String, Value>,
    allowed: &[&str],
    extra: &[String],
    identity_fields: bool,
    identity: &dyn Fn(&str) -> String,
) -> Result<(), ApiError> {
    let mut lower = BTreeSet::new();
    for key in body.keys() {
        if !lower.insert(key.to_ascii_lowercase()) {
            let msg = format!("The body has two fields that differ only in case: `{key}`.");
            return Err(refuse(key, msg).with_code("duplicate_parameter"));
        }
    }
    for key in body.keys() {
        let known = allowed.contains(&key.as_str())
            || extra.iter().any(|e| e == key)
            || DROPPED.contains(&key.as_str())
            || (identity_fields && IDENTITY_FIELDS.contains(&key.as_str()));
        if !known {
            let msg = format!("Unrecognized request argument supplied: {key}");
            return Err(ApiError::bad_request("unknown_parameter", msg).with_param(key.as_str()));
        }
    }
    if let Some(v) = body.get("stream") {
        if !v.is_boolean() && !v.is_null() {
            return Err(refuse("stream", "`stream` must be a boolean."));
        }
    }
    match body.remove("background") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(_) => {
            let msg = "Background responses are not available through edgemeter: their usage cannot be metered when they run.";
            return Err(refuse("background", msg).with_code("unsupported_parameter"));
        }
    }
    for field in DROPPED {
        body.remove(field);
    }
    for field in IDENTITY_FIELDS {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                let hashed = identity(s);
                body.insert(field.to_string(), Value::String(hashed));
            }
            Some(_) => return Err(refuse(field, format!("`{field}` must be a string."))),
        }
    }
    Ok(())
}

/// Whether a sanitized Responses body stores its response (the provider's default).
pub fn stores_response(body: &Map<String, Value>) -> bool {
    body.get("store") != Some(&Value::Bool(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(meter: Meter, body: Value) -> Result<Value, ApiError> {
        let mut map = body.as_object().unwrap().clone();
        sanitize(meter, &mut map, &["x_extra".to_string()], true, &|s| {
            format!("h({s})")
        })?;
        Ok(Value::Object(map))
    }

    #[test]
    fn identities_are_hashed_and_metadata_dropped() {
        let out = run(
            Meter::ChatCompletions,
            json!({"model": "m", "messages": [], "user": "alice", "prompt_cache_key": "k",
                "safety_identifier": "s", "metadata": {"a": 1}, "store": true}),
        )
        .unwrap();
        assert_eq!(out["user"], "h(alice)");
        assert_eq!(out["prompt_cache_key"], "h(k)");
        assert_eq!(out["safety_identifier"], "h(s)");
        assert_eq!(out.get("metadata"), None);
        assert_eq!(out["store"], false);
    }

    #[test]
    fn unknown_fields_and_bad_types_are_refused_by_name() {
        let e = run(
            Meter::ChatCompletions,
            json!({"model": "m", "frobnicate": 1}),
        )
        .unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("frobnicate")));
        assert_eq!(e.code.as_deref(), Some("unknown_parameter"));
        let e = run(
            Meter::ChatCompletions,
            json!({"model": "m", "stream": "yes"}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("stream"));
        let e = run(Meter::ChatCompletions, json!({"model": "m", "Model": "n"})).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("duplicate_parameter"));
        let e = run(Meter::ChatCompletions, json!({"model": "m", "user": 5})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("user"));
        // web search is a server-side tool with its own price: not on the list
        let e = run(
            Meter::ChatCompletions,
            json!({"model": "m", "web_search_options": {}}),
        );
        assert_eq!(e.unwrap_err().param.as_deref(), Some("web_search_options"));
        // the operator's extension passes
        assert!(run(Meter::Embeddings, json!({"model": "m", "x_extra": 1})).is_ok());
        // Anthropic has no `user` field: it is unknown there, not rewritten
        let e = run(Meter::Messages, json!({"model": "m", "user": "a"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("user"));
    }

    #[test]
    fn identities_are_always_set_and_chat_never_stores() {
        let out = run(Meter::ChatCompletions, json!({"model": "m"})).unwrap();
        assert_eq!(
            (
                out["safety_identifier"].as_str(),
                out["prompt_cache_key"].as_str()
            ),
            (Some("h()"), Some("h()"))
        );
        assert_eq!(out["store"], false);
        let emb = run(Meter::Embeddings, json!({"model": "m"})).unwrap();
        assert_eq!(emb.get("safety_identifier"), None);
    }

    #[test]
    fn background_responses_are_refused_and_store_follows_ownership() {
        let e = run(Meter::Responses, json!({"model": "m", "background": true})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("background"));
        let ok = run(Meter::Responses, json!({"model": "m", "background": false})).unwrap();
        assert_eq!(ok.get("background"), None);
        assert!(stores_response(ok.as_object().unwrap()));
        let mut map = json!({"model": "m"}).as_object().unwrap().clone();
        sanitize(Meter::Responses, &mut map, &[], false, &|s| s.to_string()).unwrap();
        assert!(!stores_response(&map));
    }
}
