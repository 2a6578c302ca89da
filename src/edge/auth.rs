//! Who may call: a customer by a key this deployment issued (checked without any
//! Durable Object call), an operator by the admin token.

use super::metrics::{bump, Metric};
use super::{config, http};
use crate::error::ApiError;
use crate::keys::{self, Mode};
use worker::{Env, Request};

/// Who is calling: a key issued by this deployment (its MAC checked here), not yet
/// checked for revocation (the counter does that at admission).
pub struct Caller {
    pub customer: String,
    pub mode: Mode,
    pub key_hash: String,
    /// The name of the caller's counter: one per customer and mode.
    pub counter: String,
}

/// The authenticate phase: no body is read and no Durable Object is called for a key
/// this deployment did not issue.
pub fn authenticate(req: &Request, env: &Env) -> Result<Caller, ApiError> {
    let key = http::api_key(req.headers()).ok_or_else(|| {
        ApiError::unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer em_live_...`.",
        )
    })?;
    let secret = config::key_secret(env)?;
    let parsed = keys::parse(&key).filter(|_| keys::signed(&key, &secret));
    let Some(parsed) = parsed else {
        bump(Metric::ForgedKeys);
        return Err(ApiError::unauthorized("Incorrect API key provided."));
    };
    Ok(Caller {
        customer: parsed.customer.to_string(),
        mode: parsed.mode,
        key_hash: keys::hash(&key),
        counter: keys::counter_name(parsed.mode, parsed.customer),
    })
}

pub(super) fn authorize(req: &Request, env: &Env) -> Result<(), ApiError> {
    let given = http::api_key(req.headers()).unwrap_or_default();
    keys::authorize_admin(config::setting(env, "ADMIN_TOKEN").as_deref(), &given)
}
