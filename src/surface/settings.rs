//! The operator's extensions of the closed surface, from the catalog's `proxy` section.
//! Every list starts closed; nothing here can forward a credential or an account
//! selector, or open a stateful route.

use super::headers::NEVER_FORWARDED;
use crate::catalog::CatalogError;
use crate::request::Meter;
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
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            request_headers: Vec::new(),
            anthropic_beta: Vec::new(),
            file_purposes: default_purposes(),
            body_fields: BTreeMap::new(),
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

impl ProxySettings {
    /// The operator's extra fields for one route.
    pub fn extra_fields(&self, meter: Meter) -> &[String] {
        self.body_fields
            .get(meter.name())
            .map_or(&[], Vec::as_slice)
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        let fail = |path: String, message: String| Err(CatalogError { path, message });
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
            if let Some(i) = fields
                .iter()
                .position(|f| LOCKED_FIELDS.contains(&f.as_str()))
            {
                return fail(
                    format!("$.proxy.body_fields.{route}[{i}]"),
                    format!(
                        "`{}` is governed by edgemeter and cannot be allowed",
                        fields[i]
                    ),
                );
            }
        }
        Ok(())
    }
}
