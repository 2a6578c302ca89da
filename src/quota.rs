//! Quota decisions: a pure function of the plan, the counter's totals (used plus
//! reserved), what a request asks for, and the time. Because totals include in-flight
//! reservations, concurrent requests can never jointly pass a limit: each one is checked
//! against everything already admitted.

use crate::catalog::{Cap, Plan};
use crate::refusal::{Refusal, Reset};
use rust_decimal::Decimal;

pub const MINUTE_MS: i64 = 60_000;

/// Everything admitted so far in the current minute and period, reservations included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub minute_requests: u64,
    pub minute_tokens: u64,
    pub period_requests: u64,
    pub period_tokens: u64,
    pub period_spend: Decimal,
    pub in_flight: u64,
}

/// What one request wants to reserve: a token estimate and its cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ask {
    pub tokens: u64,
    pub cost: Decimal,
}

/// Milliseconds until the fixed minute window containing `now_ms` ends.
pub fn minute_reset_ms(now_ms: i64) -> i64 {
    MINUTE_MS - now_ms.rem_euclid(MINUTE_MS)
}

fn secs_ceil(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

/// Admits or refuses a request. On `Ok`, the caller adds `ask` to its totals.
pub fn admit(
    plan: &Plan,
    t: &Totals,
    ask: &Ask,
    now_ms: i64,
    period_end_ms: i64,
) -> Result<(), Refusal> {
    let minute = Reset {
        now_ms,
        in_ms: minute_reset_ms(now_ms),
    };
    let period = Reset {
        now_ms,
        in_ms: period_end_ms - now_ms,
    };
    if let Some(limit) = plan.max_concurrent {
        if t.in_flight.saturating_add(1) > limit {
            let in_flight = t.in_flight;
            return Err(Refusal::Concurrency { limit, in_flight });
        }
    }
    if let Some(limit) = plan.requests_per_minute {
        if t.minute_requests.saturating_add(1) > limit {
            let used = t.minute_requests;
            return Err(Refusal::RequestsPerMinute {
                limit,
                used,
                reset: minute,
            });
        }
    }
    if let Some(limit) = plan.tokens_per_minute {
        if t.minute_tokens.saturating_add(ask.tokens) > limit {
            return Err(Refusal::TokensPerMinute {
                limit,
                used: t.minute_tokens,
                needs: ask.tokens,
                reset: minute,
            });
        }
    }
    if let Some(limit) = plan.requests_per_period {
        if t.period_requests.saturating_add(1) > limit {
            let used = t.period_requests;
            return Err(Refusal::RequestsPerPeriod {
                limit,
                used,
                reset: period,
            });
        }
    }
    if let (Some(limit), Cap::Hard) = (plan.included_tokens, plan.token_cap) {
        if t.period_tokens.saturating_add(ask.tokens) > limit {
            return Err(Refusal::IncludedTokens {
                limit,
                used: t.period_tokens,
                needs: ask.tokens,
                reset: period,
            });
        }
    }
    if let Some(limit) = plan.spend_cap {
        if t.period_spend + ask.cost > limit {
            let used = t.period_spend;
            return Err(Refusal::SpendCap {
                limit,
                used,
                reset: period,
            });
        }
    }
    Ok(())
}

/// OpenAI-style reset duration: `850ms`, `12s`, `6m0s`.
pub fn reset_text(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < MINUTE_MS {
        format!("{}s", secs_ceil(ms))
    } else {
        let s = secs_ceil(ms);
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// The `x-ratelimit-*` headers after this request was counted.
pub fn rate_headers(plan: &Plan, t: &Totals, now_ms: i64) -> Vec<(&'static str, String)> {
    let reset = reset_text(minute_reset_ms(now_ms));
    let mut out = Vec::with_capacity(6);
    if let Some(limit) = plan.requests_per_minute {
        out.push(("x-ratelimit-limit-requests", limit.to_string()));
        let left = limit.saturating_sub(t.minute_requests);
        out.push(("x-ratelimit-remaining-requests", left.to_string()));
        out.push(("x-ratelimit-reset-requests", reset.clone()));
    }
    if let Some(limit) = plan.tokens_per_minute {
        out.push(("x-ratelimit-limit-tokens", limit.to_string()));
        let left = limit.saturating_sub(t.minute_tokens);
        out.push(("x-ratelimit-remaining-tokens", left.to_string()));
        out.push(("x-ratelimit-reset-tokens", reset));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn plan() -> Plan {
        Plan {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(1000),
            requests_per_period: Some(100),
            included_tokens: Some(5000),
            token_cap: Cap::Hard,
            spend_cap: Some(Decimal::from_str("1.00").unwrap()),
            max_concurrent: Some(2),
            default_max_output_tokens: 64,
        }
    }

    const NOW: i64 = 1_764_000_000_000 + 48_000; // 48 s into a minute
    const END: i64 = NOW + 3_600_000;

    fn ask(tokens: u64, cost: &str) -> Ask {
        Ask {
            tokens,
            cost: Decimal::from_str(cost).unwrap(),
        }
    }

    fn check(t: Totals, a: Ask) -> Result<(), crate::error::ApiError> {
        admit(&plan(), &t, &a, NOW, END).map_err(|r| r.error())
    }

    #[test]
    fn each_limit_admits_at_its_bound_and_rejects_one_past_it() {
        let ok = |t: Totals, a: Ask| assert_eq!(check(t, a), Ok(()));
        let no = |t: Totals, a: Ask, kind: &str, word: &str| {
            let e = check(t, a).unwrap_err();
            assert_eq!((e.status, e.kind), (429, kind));
            assert!(e.message.contains(word), "{}", e.message);
            assert!(e.retry_after_s.unwrap() >= 1);
        };
        let base = Totals::default;
        ok(
            Totals {
                in_flight: 1,
                ..base()
            },
            ask(1, "0"),
        );
        no(
            Totals {
                in_flight: 2,
                ..base()
            },
            ask(1, "0"),
            "rate_limit_exceeded",
            "concurrent",
        );
        ok(
            Totals {
                minute_requests: 9,
                ..base()
            },
            ask(1, "0"),
        );
        no(
            Totals {
                minute_requests: 10,
                ..base()
            },
            ask(1, "0"),
            "rate_limit_exceeded",
            "requests per minute",
        );
        // 900 used + 100 asked = 1000 = limit: admitted; 901 + 100 = 1001: rejected
        ok(
            Totals {
                minute_tokens: 900,
                ..base()
            },
            ask(100, "0"),
        );
        no(
            Totals {
                minute_tokens: 901,
                ..base()
            },
            ask(100, "0"),
            "rate_limit_exceeded",
            "tokens per minute",
        );
        ok(
            Totals {
                period_requests: 99,
                ..base()
            },
            ask(1, "0"),
        );
        no(
            Totals {
                period_requests: 100,
                ..base()
            },
            ask(1, "0"),
            "insufficient_quota",
            "requests per period",
        );
        ok(
            Totals {
                period_tokens: 4900,
                ..base()
            },
            ask(100, "0"),
        );
        no(
            Totals {
                period_tokens: 4901,
                ..base()
            },
            ask(100, "0"),
            "insufficient_quota",
            "included tokens",
        );
        // 0.99 spent + 0.01 asked = 1.00 = cap: admitted; 0.990001 + 0.01 > 1.00: rejected
        ok(
            Totals {
                period_spend: Decimal::from_str("0.99").unwrap(),
                ..base()
            },
            ask(1, "0.01"),
        );
        let over = Totals {
            period_spend: Decimal::from_str("0.990001").unwrap(),
            ..base()
        };
        no(over, ask(1, "0.01"), "insufficient_quota", "spend cap");
    }

    #[test]
    fn soft_token_cap_admits_overage() {
        let soft = Plan {
            token_cap: Cap::Soft,
            ..plan()
        };
        let t = Totals {
            period_tokens: 10_000,
            ..Totals::default()
        };
        assert_eq!(admit(&soft, &t, &ask(100, "0"), NOW, END), Ok(()));
    }

    #[test]
    fn minute_rejection_names_the_reset() {
        let t = Totals {
            minute_requests: 10,
            ..Totals::default()
        };
        let e = check(t, ask(1, "0")).unwrap_err();
        // 48 s into the minute -> 12 s left
        assert_eq!(e.retry_after_s, Some(12));
        assert!(e.message.contains("resets in 12s"), "{}", e.message);
    }

    #[test]
    fn unlimited_plan_admits_anything() {
        let open = Plan {
            default_max_output_tokens: 1,
            ..Plan::default()
        };
        let t = Totals {
            in_flight: 1 << 40,
            minute_tokens: 1 << 50,
            ..Totals::default()
        };
        assert_eq!(admit(&open, &t, &ask(1 << 40, "1e9"), NOW, END), Ok(()));
        assert!(rate_headers(&open, &t, NOW).is_empty());
    }

    #[test]
    fn headers_show_remaining_after_this_request() {
        let t = Totals {
            minute_requests: 4,
            minute_tokens: 250,
            ..Totals::default()
        };
        let h = rate_headers(&plan(), &t, NOW);
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("x-ratelimit-remaining-requests"), "6");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "750");
        assert_eq!(get("x-ratelimit-reset-requests"), "12s");
        assert_eq!(reset_text(61_000), "1m1s");
        assert_eq!(reset_text(850), "850ms");
    }
}
