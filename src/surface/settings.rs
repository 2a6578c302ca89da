//! The operator's extensions of the closed surface, from the catalog's `proxy` section.
//! Every list starts closed; nothing here can forward a credential or an account
//! selector, or open a stateful route.

use super::headers::NEVER_FORWARDED;
use crate::error::CatalogError;
use crate::request::Meter;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// File purposes accepted when the catalog names none: the ones a chat or responses
/// request can use. `batch` and `fine-tune` would feed refused families.
const DEFAULT_PURPOSES: [&str; 3] = ["assistants", "user_data", "vision"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Extra request headers forwarded to the provider, by name.
    #[serde(default)]
    pub request_headers: Vec<String>,
    /// `anthropic-beta` values forwarded; any other value is dropped.
    #[serde(default)]
    pub anthropic_beta: Vec<String>,
    /// Purposes a file upload may ask for.
    #[serde(default = "default_purposes")]
    pub file_purposes: Vec<String>,
    /// Extra top-level body fields per metered route, keyed by meter name
    /// (`chat.completions`, `responses`, ...).
    #[serde(default)]
    pub body_fields: BTreeMap<String, Vec<String>>,
    /// Stateless routes the operator opts in, by name (`moderations`, ...), each at a
    /// fixed price per request.
    #[serde(default)]
    pub routes: BTreeMap<String, OptionalRoute>,
    /// The output cap spelling the OpenAI-compatible upstream honours on chat
    /// completions (`max_completion_tokens`, OpenAI's, or `max_tokens`, older
    /// compatible servers'): a chat request's cap is always sent in it.
    #[serde(default)]
    pub chat_cap_field: Option<String>,
}

/// Spellings of a chat completion's output cap an upstream may honour.
const CHAT_CAP_FIELDS: [&str; 2] = ["max_completion_tokens", "max_tokens"];

/// A stateless route opted in at a fixed price. Its usage is counted under the
/// `requests` meter with the route's name as the model.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptionalRoute {
    /// What one request costs, in the catalog currency.
    pub per_request: Decimal,
    /// The top-level body fields that may pass (identity fields are always hashed).
    pub fields: Vec<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            request_headers: Vec::new(),
            anthropic_beta: Vec::new(),
            file_purposes: default_purposes(),
            body_fields: BTreeMap::new(),
            routes: BTreeMap::new(),
            chat_cap_field: None,
        }
    }
}

fn default_purposes() -> Vec<String> {
    DEFAULT_PURPOSES.map(String::from).to_vec()
}

const METERED: [Meter; 5] = [
    Meter::ChatCompletions,
    Meter::Completions,
    Meter::Embeddings,
    Meter::Responses,
    Meter::Messages,
];

/// Fields an operator cannot allow: the identity and metadata rules, and what would
/// make usage unmeterable.
const LOCKED_FIELDS: [&str; 8] = [
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "metadata",
    "store",
    "background",
    "conversation",
    "prompt",
];

/// Fields an opted-in route cannot pass: they store state or tag it. Identity fields
/// may be listed there; they are hashed like everywhere.
const LOCKED_OPTIONAL: [&str; 3] = ["metadata", "store", "background"];

/// Refuses a field list that names a field edgemeter governs.
fn locked(fields: &[String], governed: &[&str], path: &str) -> Result<(), CatalogError> {
    match fields.iter().position(|f| governed.contains(&f.as_str())) {
        Some(i) => Err(CatalogError {
            path: format!("{path}[{i}]"),
            message: format!(
                "`{}` is governed by edgemeter and cannot be allowed",
                fields[i]
            ),
        }),
        None => Ok(()),
    }
}

impl ProxySettings {
    /// The fixed price of an opted-in route, by its name.
    pub fn route_price(&self, name: &str) -> Option<Decimal> {
        self.routes.get(name).map(|r| r.per_request)
    }

    /// The operator's extra fields for one route.
    pub fn extra_fields(&self, meter: Meter) -> &[String] {
        self.body_fields
            .get(meter.name())
            .map_or(&[], Vec::as_slice)
    }

    /// The chat cap spelling the upstream honours.
    pub fn chat_cap(&self) -> &str {
        self.chat_cap_field.as_deref().unwrap_or(CHAT_CAP_FIELDS[0])
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        let fail = |path: String, message: String| Err(CatalogError { path, message });
        if let Some(f) = self.chat_cap_field.as_deref() {
            if !CHAT_CAP_FIELDS.contains(&f) {
                let msg = format!("must be one of {}", CHAT_CAP_FIELDS.join(", "));
                return fail("$.proxy.chat_cap_field".into(), msg);
            }
        }
        for (i, h) in self.request_headers.iter().enumerate() {
            let lower = h.to_ascii_lowercase();
            if NEVER_FORWARDED.contains(&lower.as_str()) || lower.starts_with("cf-") {
                return fail(
                    format!("$.proxy.request_headers[{i}]"),
                    format!("`{h}` can never be forwarded"),
                );
            }
        }
        for (route, fields) in &self.body_fields {
            if !METERED.iter().any(|m| m.name() == route) {
                return fail(
                    format!("$.proxy.body_fields.{route}"),
                    "unknown route; use a meter name such as chat.completions".into(),
                );
            }
            locked(
                fields,
                &LOCKED_FIELDS,
                &format!("$.proxy.body_fields.{route}"),
            )?;
        }
        for (name, route) in &self.routes {
            let base = format!("$.proxy.routes.{name}");
            if super::optional_path(name).is_none() {
                let known: Vec<&str> = super::OPTIONAL_ROUTES.iter().map(|(n, _)| *n).collect();
                let msg = format!(
                    "only stateless routes can be opted in: {}; stored and credential routes never can",
                    known.join(", ")
                );
                return fail(base, msg);
            }
            if route.per_request.is_sign_negative() && !route.per_request.is_zero() {
                return fail(format!("{base}.per_request"), "must not be negative".into());
            }
            if route.fields.is_empty() {
                return fail(
                    format!("{base}.fields"),
                    "list the fields that may pass".into(),
                );
            }
            locked(&route.fields, &LOCKED_OPTIONAL, &format!("{base}.fields"))?;
        }
        Ok(())
    }
}
