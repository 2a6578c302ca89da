//! Why a request was refused before it reached the provider: a typed value the core
//! decides and the edge renders once, with [`Refusal::error`], in OpenAI's error shape.
//! Nothing was reserved or metered for a refused request.

use crate::error::ApiError;
use crate::period::iso8601;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// When a window or period that refused a request resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The instant of the refusal.
    pub now_ms: i64,
    /// Milliseconds from then until the limit resets.
    pub in_ms: i64,
}

impl Reset {
    /// Whole seconds to wait, at least one: what `Retry-After` says.
    pub fn secs(&self) -> u64 {
        (self.in_ms.max(0) as u64).div_ceil(1000).max(1)
    }

    fn text(&self) -> String {
        let at = iso8601(self.now_ms + self.in_ms);
        format!("resets in {}s, at {at}", self.secs())
    }
}

/// The limit a request would have passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Concurrency {
        limit: u64,
        in_flight: u64,
    },
    RequestsPerMinute {
        limit: u64,
        used: u64,
        reset: Reset,
    },
    TokensPerMinute {
        limit: u64,
        used: u64,
        needs: u64,
        reset: Reset,
    },
    RequestsPerPeriod {
        limit: u64,
        used: u64,
        reset: Reset,
    },
    IncludedTokens {
        limit: u64,
        used: u64,
        needs: u64,
        reset: Reset,
    },
    SpendCap {
        limit: Decimal,
        used: Decimal,
        reset: Reset,
    },
    /// A prepaid plan whose credits the rating side found used up.
    CreditsUsedUp {
        balance: String,
        currency: String,
    },
    /// An input part billed by its content, which no estimate can bound, under a plan
    /// whose hard limits need a bound.
    Unbounded {
        part: String,
    },
}

fn rate(what: &str, limit: u64, used: u64, reset: &Reset) -> ApiError {
    let msg = format!(
        "Rate limit reached for {what}: limit {limit}, used {used}; {}.",
        reset.text()
    );
    ApiError::quota("rate_limit_exceeded", msg, reset.secs())
}

fn budget(what: &str, limit: String, used: String, reset: &Reset) -> ApiError {
    let msg = format!(
        "You exceeded your plan's {what}: limit {limit}, used {used}; the period {}.",
        reset.text()
    );
    ApiError::quota("insufficient_quota", msg, reset.secs())
}

fn needing(mut e: ApiError, tokens: u64) -> ApiError {
    e.message = format!("{} This request needs up to {tokens} tokens.", e.message);
    e
}

impl Refusal {
    /// The one rendering of a refusal: 429 with `Retry-After` for every limit, 400 for
    /// an input that cannot be bounded.
    pub fn error(&self) -> ApiError {
        match self {
            Refusal::Concurrency { limit, in_flight } => {
                let msg = format!("Too many concurrent requests: limit {limit}, in flight {in_flight}; retry when one finishes.");
                ApiError::quota("rate_limit_exceeded", msg, 1)
            }
            Refusal::RequestsPerMinute { limit, used, reset } => {
                rate("requests per minute", *limit, *used, reset)
            }
            Refusal::TokensPerMinute {
                limit,
                used,
                needs,
                reset,
            } => needing(rate("tokens per minute", *limit, *used, reset), *needs),
            Refusal::RequestsPerPeriod { limit, used, reset } => budget(
                "requests per period",
                limit.to_string(),
                used.to_string(),
                reset,
            ),
            Refusal::IncludedTokens {
                limit,
                used,
                needs,
                reset,
            } => {
                let (limit, used) = (limit.to_string(), used.to_string());
                needing(budget("included tokens", limit, used, reset), *needs)
            }
            Refusal::SpendCap { limit, used, reset } => {
                let used = used.round_dp(6).normalize().to_string();
                budget("spend cap", limit.to_string(), used, reset)
            }
            Refusal::CreditsUsedUp { balance, currency } => {
                let msg = format!(
                    "Your prepaid credits are used up (balance {balance} {currency}); top up to continue."
                );
                ApiError::quota("insufficient_quota", msg, 60)
            }
            Refusal::Unbounded { part } => {
                let msg = format!("A `{part}` input part is billed by its content (pages, length), which edgemeter cannot bound before it runs; under your plan's limits, send it as text or images instead.");
                ApiError::bad_request("unbounded_input", msg).with_param(part.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_048_000;

    #[test]
    fn each_refusal_renders_its_status_type_and_retry() {
        let reset = Reset {
            now_ms: NOW,
            in_ms: 11_001,
        };
        let cases = [
            (
                Refusal::Concurrency {
                    limit: 2,
                    in_flight: 2,
                },
                429,
                "rate_limit_exceeded",
                Some(1),
            ),
            (
                Refusal::TokensPerMinute {
                    limit: 10,
                    used: 9,
                    needs: 4,
                    reset,
                },
                429,
                "rate_limit_exceeded",
                Some(12),
            ),
            (
                Refusal::SpendCap {
                    limit: Decimal::ONE,
                    used: Decimal::new(9_999_999, 7),
                    reset,
                },
                429,
                "insufficient_quota",
                Some(12),
            ),
            (
                Refusal::CreditsUsedUp {
                    balance: "0.00".into(),
                    currency: "EUR".into(),
                },
                429,
                "insufficient_quota",
                Some(60),
            ),
            (
                Refusal::Unbounded {
                    part: "input_file".into(),
                },
                400,
                "invalid_request_error",
                None,
            ),
        ];
        for (refusal, status, kind, retry) in cases {
            let e = refusal.error();
            assert_eq!((e.status, e.kind, e.retry_after_s), (status, kind, retry));
        }
    }

    #[test]
    fn messages_name_the_limit_the_use_and_the_reset() {
        let reset = Reset {
            now_ms: NOW,
            in_ms: 12_000,
        };
        let e = Refusal::IncludedTokens {
            limit: 5000,
            used: 4901,
            needs: 100,
            reset,
        }
        .error();
        assert!(e.message.starts_with("You exceeded your plan's included tokens: limit 5000, used 4901; the period resets in 12s, at "), "{}", e.message);
        assert!(e.message.ends_with("This request needs up to 100 tokens."));
        let spend = Refusal::SpendCap {
            limit: Decimal::ONE,
            used: Decimal::new(9_999_999, 7),
            reset,
        }
        .error();
        assert!(spend.message.contains("used 1;"), "{}", spend.message);
    }

    #[test]
    fn a_refusal_survives_the_trip_to_the_proxy() {
        let r = Refusal::SpendCap {
            limit: Decimal::new(150, 2),
            used: Decimal::new(1_499_999, 6),
            reset: Reset {
                now_ms: NOW,
                in_ms: 5,
            },
        };
        let back: Refusal = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
