//! The counter's admission decision, whole: the key, idempotency, the prepaid block,
//! the plan's quotas, the output cap and what the proxy needs to price the answer.
//! The counter loads what [`decide`] reads, calls it once, and stores the reservation
//! it returns.

use crate::catalog::Plan;
use crate::counter_state::{reserve_of, CounterState};
use crate::error::ApiError;
use crate::keys;
use crate::pricing::Pricing;
use crate::protocol::{AdmitResponse, CreditState, Replay, SpendBasis};
use crate::quota::rate_headers;
use crate::refusal::Refusal;
use crate::request::AdmitAsk;
use crate::reservation::Reservation;

/// How long a retry with the same Idempotency-Key is answered from the first request.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3_600_000;

/// What a retry of an idempotent request gets when its response was not kept: it was
/// metered, so it must not run again.
pub fn not_kept() -> Replay {
    let msg = "The request with this Idempotency-Key was metered, but its response could not be kept for replay.";
    let e = ApiError::conflict("idempotency_response_not_kept", msg);
    Replay {
        status: e.status,
        content_type: "application/json".into(),
        body: e.body(),
    }
}

/// A stored key of the customer's.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub hash: String,
    pub id: String,
    pub mode: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A counter that holds no customer answers as an unknown key does.
pub fn unknown_customer() -> ApiError {
    ApiError::unauthorized("Incorrect API key provided.")
}

/// An admin asking about a customer that does not exist gets 404, where a key holder
/// gets 401.
pub fn for_admin(e: ApiError) -> ApiError {
    match e.status {
        401 => ApiError::not_found("No such customer."),
        _ => e,
    }
}

/// Checks a key hash against every key, in constant time per key.
pub fn verify(keys: &[KeyRow], key_hash: &str) -> Result<(), ApiError> {
    match keys.iter().find(|k| keys::same_hash(&k.hash, key_hash)) {
        Some(k) if k.revoked_ms.is_none() => Ok(()),
        Some(_) => Err(ApiError::unauthorized("This API key has been revoked.")),
        None => Err(unknown_customer()),
    }
}

/// The request stored under this Idempotency-Key: still running while `replay` is
/// `None`.
#[derive(Debug, Clone)]
pub struct Prior {
    pub body_hash: String,
    pub created_ms: i64,
    /// The stored answer as kept (JSON), read only once the retry is known to be one.
    pub replay: Option<String>,
}

/// What the counter holds that the decision reads.
pub struct Held<'a> {
    pub plan_name: &'a str,
    pub plan: &'a Plan,
    pub pricing: &'a Pricing<'a>,
    /// The rating side's last word on prepaid credits.
    pub credit: Option<&'a CreditState>,
    /// The request stored under the Idempotency-Key, if any.
    pub prior: Option<Prior>,
}

/// What the request asks.
pub struct Asked<'a> {
    pub ask: &'a AdmitAsk,
    /// The Idempotency-Key and the hash of the body it was sent with.
    pub idempotency: Option<&'a (String, String)>,
    pub now_ms: i64,
}

/// The answer for the proxy, and the reservation to store when one was made.
#[derive(Debug)]
pub struct Decision {
    pub answer: AdmitResponse,
    pub reserved: Option<Reservation>,
}

fn answer(answer: AdmitResponse) -> Decision {
    Decision {
        answer,
        reserved: None,
    }
}

/// Admits, replays or refuses. A retry of an idempotent request is answered from its
/// stored response, or refused while the first one runs; a body that differs from the
/// first one's is an error. Then prepaid credits, then the plan's limits.
pub fn decide(state: &mut CounterState, held: Held, asked: Asked) -> Result<Decision, ApiError> {
    let (ask, now) = (asked.ask, asked.now_ms);
    let prior = held
        .prior
        .filter(|p| now - p.created_ms < IDEMPOTENCY_TTL_MS);
    if let (Some(prior), Some((_, hash))) = (prior, asked.idempotency) {
        if !keys::same_hash(&prior.body_hash, hash) {
            let msg = "This Idempotency-Key was already used with a different request body.";
            let e = ApiError::bad_request("idempotency_key_reused", msg);
            return Err(e.with_param("Idempotency-Key"));
        }
        let Some(kept) = prior.replay else {
            let msg = "A request with this Idempotency-Key is still in progress.";
            let mut e = ApiError::conflict("idempotency_key_in_use", msg);
            e.retry_after_s = Some(1);
            return Err(e);
        };
        let replay: Replay = serde_json::from_str(&kept).map_err(ApiError::unexpected)?;
        return Ok(answer(AdmitResponse::Replayed { replay }));
    }
    if let Some(c) = held.credit.filter(|c| c.blocked) {
        let refusal = Refusal::CreditsUsedUp {
            balance: c.balance.clone(),
            currency: c.currency.clone(),
        };
        let headers = vec![];
        return Ok(answer(AdmitResponse::Refused { refusal, headers }));
    }
    let (plan, pricing) = (held.plan, held.pricing);
    let admitted = state.admit(pricing, plan, ask, now);
    let headers: Vec<(String, String)> = rate_headers(plan, &state.minute_totals(), now)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut r = match admitted {
        Ok(r) => r,
        Err(refusal) => return Ok(answer(AdmitResponse::Refused { refusal, headers })),
    };
    if asked.idempotency.is_some() {
        r.idempotent = true;
        if let Some(kept) = state.reservations.get_mut(&r.id) {
            kept.idempotent = true;
        }
    }
    let reserved = reserve_of(plan, ask);
    // Under a price-book plan a stream's cost header says what the reserved usage would
    // add to the invoice, like a finished request's; the proxy gets the period's totals
    // to price the finished request the same way.
    let (reserved_cost, spend_basis) = match pricing.needs_totals() {
        false => (r.cost, None),
        true => {
            let (period, tallies) = (state.period, &state.tallies);
            let spent = pricing.spend(period, tallies);
            let key = (ask.meter.clone(), ask.model.clone());
            let cost = pricing.marginal(period, tallies, spent, &key, &reserved);
            let basis = SpendBasis {
                period,
                tallies: tallies.iter().map(|(k, t)| (k.clone(), *t)).collect(),
                spent,
            };
            (cost, Some(basis))
        }
    };
    let output_cap = output_cap(plan, ask);
    let answer = AdmitResponse::Admitted {
        reservation: r.id,
        plan: held.plan_name.to_string(),
        reserved_cost: reserved_cost.normalize().to_string(),
        output_cap,
        headers,
        spend_basis,
        reserved,
    };
    Ok(Decision {
        answer,
        reserved: Some(r),
    })
}

/// The output cap to send upstream: the plan's default when its limits need a bound
/// and the request names none.
pub fn output_cap(plan: &Plan, ask: &AdmitAsk) -> Option<u64> {
    match ask.output_cap {
        None if plan.needs_output_cap() => {
            let d = plan.default_max_output_tokens;
            Some(ask.max_output.map_or(d, |max| d.min(max)))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
