//! The versioned plan and price catalog. It is parsed strictly: unknown fields, bad
//! numbers and impossible limits are rejected with the JSON path of the problem, so a
//! typo can never silently disable a quota or price a model at zero.

pub use crate::error::CatalogError;
use crate::usage::Usage;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One million, the unit prices are quoted in (`per_mtok`).
const MTOK: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// ISO 4217 codes accepted, with their minor units (used when amounts are rounded).
pub const CURRENCIES: &[(&str, u32)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("INR", 2),
    ("BRL", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("BHD", 3),
];

/// The whole catalog: prices per model and the plans customers are on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Free-form version label, recorded with usage so a price change is traceable.
    pub version: String,
    /// ISO 4217 currency all prices, spend caps and costs are in.
    pub currency: String,
    pub models: BTreeMap<String, ModelPrice>,
    pub plans: BTreeMap<String, Plan>,
    /// What the operator allows beyond the closed surface's built-in lists.
    #[serde(default)]
    pub proxy: crate::surface::settings::ProxySettings,
    /// Lago's `external_subscription_id` per customer id: Lago bills usage to a
    /// subscription, not a customer. A customer missing here is never sent to Lago.
    #[serde(default)]
    pub subscriptions: BTreeMap<String, String>,
}

/// Prices of one model, per million tokens. Absent prices are zero.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    #[serde(default)]
    pub input_per_mtok: Decimal,
    /// Price of prompt tokens served from the provider's cache; defaults to the input price.
    #[serde(default)]
    pub cached_input_per_mtok: Option<Decimal>,
    #[serde(default)]
    pub output_per_mtok: Decimal,
    /// Prompt tokens written to the provider's cache, for its default duration (5
    /// minutes) and for an hour; default 1.25 and 2 times the input price, as Anthropic
    /// bills them.
    #[serde(default)]
    pub cache_write_per_mtok: Option<Decimal>,
    #[serde(default)]
    pub cache_write_1h_per_mtok: Option<Decimal>,
    /// Audio prompt tokens. A model without this price is not sent audio input.
    #[serde(default)]
    pub audio_input_per_mtok: Option<Decimal>,
    /// The most output tokens the model generates per choice: caps above it are
    /// reserved at it.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// The most input tokens one image can cost on this model; default
    /// [`DEFAULT_IMAGE_TOKENS`].
    #[serde(default)]
    pub image_input_tokens: Option<u64>,
    /// Input tokens one KiB of inline audio data can cost; default 1024 (one a byte).
    #[serde(default)]
    pub audio_tokens_per_kib: Option<u64>,
}

/// The most one image costs on any model edgemeter knows of: GPT-4o mini at high
/// detail, 2,833 base tokens plus 5,667 for each of at most 8 tiles (README, *The catalog*).
pub const DEFAULT_IMAGE_TOKENS: u64 = 2_833 + 8 * 5_667;

/// Whether a spent budget blocks further use or lets it continue as overage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    #[default]
    Hard,
    Soft,
}

/// A plan's limits. Every limit is optional: absent means unlimited.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// Requests included per billing period (always a hard cap).
    pub requests_per_period: Option<u64>,
    /// Tokens (input + output) included per billing period.
    pub included_tokens: Option<u64>,
    #[serde(default)]
    pub token_cap: Cap,
    /// Maximum spend per billing period, in the catalog currency (always hard).
    pub spend_cap: Option<Decimal>,
    pub max_concurrent: Option<u64>,
    /// Output tokens reserved for a request that names no `max_tokens`; under a plan
    /// with token or spend limits it is also sent upstream as the request's cap.
    #[serde(default = "default_max_output")]
    pub default_max_output_tokens: u64,
}

impl Plan {
    /// Whether a limit of this plan counts tokens or money, so a request's output must
    /// be bounded for the limit to hold exactly.
    pub fn needs_output_cap(&self) -> bool {
        self.tokens_per_minute.is_some()
            || self.spend_cap.is_some()
            || (self.included_tokens.is_some() && self.token_cap == Cap::Hard)
    }
}

fn default_max_output() -> u64 {
    4096
}

fn problem(path: String, message: impl Into<String>) -> CatalogError {
    CatalogError {
        path,
        message: message.into(),
    }
}

impl Catalog {
    /// Parses and validates a catalog; the error names the JSON path of the first problem.
    pub fn parse(json: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = serde_json::from_str(json).map_err(|e| {
            let path = crate::json_path::path_at(json, e.line(), e.column());
            problem(path, e.to_string())
        })?;
        catalog.validate()?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        if self.version.trim().is_empty() {
            return Err(problem("$.version".into(), "must not be empty"));
        }
        if minor_units(&self.currency).is_none() {
            return Err(problem(
                "$.currency".into(),
                format!("unknown ISO 4217 currency `{}`", self.currency),
            ));
        }
        self.proxy.validate()?;
        if let Some(name) = self
            .proxy
            .routes
            .keys()
            .find(|r| self.models.contains_key(*r))
        {
            // The route's usage is metered under its name; a model of that name would
            // price it by tokens instead of per request.
            return Err(problem(
                format!("$.proxy.routes.{name}"),
                "a route priced per request cannot share its name with a model",
            ));
        }
        if self.plans.is_empty() {
            return Err(problem("$.plans".into(), "at least one plan is required"));
        }
        for (name, price) in &self.models {
            let base = format!("$.models.{name}");
            let prices = [
                ("input_per_mtok", Some(price.input_per_mtok)),
                ("cached_input_per_mtok", price.cached_input_per_mtok),
                ("output_per_mtok", Some(price.output_per_mtok)),
            ];
            for (field, value) in prices {
                if value.is_some_and(|v| v.is_sign_negative() && !v.is_zero()) {
                    return Err(problem(
                        format!("{base}.{field}"),
                        "price must not be negative",
                    ));
                }
            }
        }
        for (name, plan) in &self.plans {
            let base = format!("$.plans.{name}");
            let limits = [
                ("requests_per_minute", plan.requests_per_minute),
                ("tokens_per_minute", plan.tokens_per_minute),
                ("requests_per_period", plan.requests_per_period),
                ("max_concurrent", plan.max_concurrent),
                (
                    "default_max_output_tokens",
                    Some(plan.default_max_output_tokens),
                ),
            ];
            for (field, value) in limits {
                if value == Some(0) {
                    return Err(problem(format!("{base}.{field}"), "must be at least 1"));
                }
                if value.is_some_and(|v| v > MAX_COUNTER) {
                    return Err(problem(format!("{base}.{field}"), "must be below 2^53"));
                }
            }
            if plan.included_tokens.is_some_and(|v| v > MAX_COUNTER) {
                return Err(problem(
                    format!("{base}.included_tokens"),
                    "must be below 2^53",
                ));
            }
            if plan
                .spend_cap
                .is_some_and(|v| v.is_sign_negative() && !v.is_zero())
            {
                return Err(problem(format!("{base}.spend_cap"), "must not be negative"));
            }
        }
        Ok(())
    }

    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }
}

/// Counters are stored as integers that must stay exact in a JavaScript number.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// ISO 4217 minor units of a currency, or `None` when it is not supported.
pub fn minor_units(currency: &str) -> Option<u32> {
    CURRENCIES
        .iter()
        .find(|(code, _)| *code == currency)
        .map(|(_, units)| *units)
}

impl ModelPrice {
    /// Exact cost of some usage. Cache reads, cache writes and audio are parts of
    /// `input`, each at its own rate; reasoning tokens are part of `output`. Nothing is
    /// rounded here: rounding happens once, when an invoice line is rated.
    pub fn cost(&self, usage: &Usage) -> Decimal {
        let p = usage.input_parts();
        let input = self.input_per_mtok;
        let cached = self.cached_input_per_mtok.unwrap_or(input);
        let write = self
            .cache_write_per_mtok
            .unwrap_or(input * Decimal::new(125, 2));
        let write_1h = self.cache_write_1h_per_mtok.unwrap_or(input * Decimal::TWO);
        // A model without an audio price never takes audio (`bounds::apply` refuses it).
        let audio = self.audio_input_per_mtok.unwrap_or(input);
        (Decimal::from(p.fresh) * input
            + Decimal::from(p.cached) * cached
            + Decimal::from(p.cache_write) * write
            + Decimal::from(p.cache_write_1h) * write_1h
            + Decimal::from(p.audio) * audio
            + Decimal::from(usage.output) * self.output_per_mtok)
            / MTOK
    }
}

/// List price of `requests` requests that used `usage` in total under `model`: its token
/// prices, or an opted-in route's price per request; anything else costs nothing.
pub fn cost_of(catalog: &Catalog, model: &str, usage: &Usage, requests: u64) -> Decimal {
    match catalog.price(model) {
        Some(p) => p.cost(usage),
        // An opted-in route is metered under its name, at its fixed price per request.
        None => catalog
            .proxy
            .route_price(model)
            .map_or(Decimal::ZERO, |per| per * Decimal::from(requests)),
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
