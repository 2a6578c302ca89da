//! Who may call: a customer by a key this deployment issued (checked without any
//! Durable Object call), an operator by the admin token.

use super::http::NamedHeaders;
use super::metrics::{bump, Metric};
use super::{config, http};
use crate::error::ApiError;
use crate::keys::{self, Mode};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::{Env, Request};

/// Who is calling: a key issued by this deployment (its MAC checked here), not yet
/// checked for revocation (the counter does that at admission).
#[derive(Clone)]
pub struct Caller {
    pub customer: String,
    pub mode: Mode,
    pub key_hash: String,
    /// The name of the caller's counter: one per customer and mode.
    pub counter: String,
    /// The customer's identity for an end user a body does not name.
    pub anonymous: String,
}

/// Keys whose MAC this isolate checked, with what they say. A key's signature never
/// changes (revocation is the counter's), so this only saves the hashing; it is
/// emptied when full, so it stays small.
const VERIFIED_MAX: usize = 4096;

thread_local! {
    static VERIFIED: RefCell<HashMap<String, Caller>> = RefCell::new(HashMap::new());
}

/// A caller whose key this isolate already checked, counting nothing otherwise (the
/// entry's common case: a key not yet seen goes the whole way, see `edge::fast`).
pub fn verified(headers: &NamedHeaders) -> Option<Caller> {
    let key = http::api_key(headers)?;
    VERIFIED.with(|v| v.borrow().get(&key).cloned())
}

/// The authenticate phase: no body is read and no Durable Object is called for a key
/// this deployment did not issue.
pub fn authenticate(headers: &NamedHeaders, env: &Env) -> Result<Caller, ApiError> {
    let key = http::api_key(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer em_live_...`.",
        )
    })?;
    if let Some(caller) = VERIFIED.with(|v| v.borrow().get(&key).cloned()) {
        return Ok(caller);
    }
    let secret = config::key_secret(env)?;
    let parsed = keys::parse(&key).filter(|_| keys::signed(&key, &secret));
    let Some(parsed) = parsed else {
        bump(Metric::ForgedKeys);
        return Err(ApiError::unauthorized("Incorrect API key provided."));
    };
    let caller = Caller {
        customer: parsed.customer.to_string(),
        mode: parsed.mode,
        key_hash: keys::hash(&key),
        counter: keys::counter_name(parsed.mode, parsed.customer),
        anonymous: keys::identity(&secret, parsed.mode, parsed.customer, ""),
    };
    VERIFIED.with(|v| {
        let mut verified = v.borrow_mut();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key, caller.clone());
    });
    Ok(caller)
}

pub(super) fn authorize(req: &Request, env: &Env) -> Result<(), ApiError> {
    let headers = NamedHeaders::read(req.headers(), http::KEY_HEADERS);
    let given = http::api_key(&headers).unwrap_or_default();
    keys::authorize_admin(config::setting(env, "ADMIN_TOKEN").as_deref(), &given)
}
