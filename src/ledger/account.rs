//! A customer's billing account on its Ledger, as documents: the account with its plan
//! (checked against the price book), its credit grants (added once each, voided from
//! an instant on), and what the customer's counter is told about prepaid credits.

use crate::error::ApiError;
use crate::ledger::books::rating_error;
use crate::protocol::CreditState;
use crate::rating::{usage_blocked, Account, BookPlan, CreditGrant, PriceBook};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Checks an account document `{plan, account, livemode}` against the book; answers
/// its mode (live unless it says `false`).
pub fn check(book: &PriceBook, doc: &Value) -> Result<bool, ApiError> {
    let plan = doc["plan"].as_str().unwrap_or_default();
    if !book.plans.contains_key(plan) {
        let msg = format!("The price book has no plan `{plan}`.");
        return Err(ApiError::bad_request("unknown_plan", msg).with_param("plan"));
    }
    Account::parse(&doc["account"].to_string(), book).map_err(rating_error)?;
    Ok(doc["livemode"] != false)
}

/// The mode a management call addresses: live unless its query says `livemode=false`.
pub fn livemode_of(query: &str) -> Result<bool, ApiError> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("livemode="));
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => {
            let msg = format!("`livemode` must be true or false, got `{other}`.");
            Err(ApiError::bad_request("invalid_value", msg).with_param("livemode"))
        }
    }
}

/// An account document put for customer `id`: its `account.customer_id` must be `id`,
/// so no call can bill one customer's usage to another's account. Answers the document
/// stamped with the mode it was put in.
pub fn for_customer(id: &str, mut doc: Value, livemode: bool) -> Result<Value, ApiError> {
    if doc["account"]["customer_id"] != *id {
        let msg = format!("`account.customer_id` must be `{id}`, the customer in the path.");
        let e = ApiError::bad_request("invalid_value", msg);
        return Err(e.with_param("account.customer_id"));
    }
    doc["livemode"] = Value::Bool(livemode);
    Ok(doc)
}

/// Adds a grant to an account's grants: each id once.
pub fn add_grant(grants: &mut Vec<Value>, grant: &Value) -> Result<(), ApiError> {
    let g: CreditGrant = serde_json::from_value(grant.clone()).map_err(ApiError::invalid_json)?;
    if grants.iter().any(|x| x["id"] == g.id.as_str()) {
        let msg = format!("A grant `{}` exists already.", g.id);
        return Err(ApiError::conflict("grant_exists", msg));
    }
    grants.push(grant.clone());
    Ok(())
}

/// Voids grant `id` from `now_ms` on; it stays, with what it paid. Answers it voided.
pub fn void_grant(grants: &mut [Value], id: &str, now_ms: i64) -> Result<Value, ApiError> {
    let Some(g) = grants.iter_mut().find(|g| g["id"] == id) else {
        return Err(ApiError::not_found(format!("No grant `{id}`.")).with_param("grant_id"));
    };
    if g.get("voided_at_ms").is_some_and(|v| !v.is_null()) {
        let msg = format!("The grant `{id}` is voided already.");
        return Err(ApiError::conflict("grant_voided", msg));
    }
    g["voided_at_ms"] = json!(now_ms);
    Ok(g.clone())
}

/// Whether the customer's counter may need to hear of credits: on a plan that blocks
/// when its credits run out, or when it was last told usage is blocked (and the plan
/// has changed since).
pub fn may_need_news(plan: &BookPlan, told: Option<bool>) -> bool {
    plan.block_when_credits_exhausted || told == Some(true)
}

/// What to tell the customer's counter about prepaid credits, when it changed since
/// it was last told (`told`): only a plan that blocks when its credits run out blocks,
/// and a counter blocked under an earlier plan is let go.
pub fn credit_news(
    plan: &BookPlan,
    balance: Decimal,
    currency: &str,
    told: Option<bool>,
) -> Option<CreditState> {
    if !may_need_news(plan, told) {
        return None;
    }
    let blocked = usage_blocked(plan, balance);
    (told != Some(blocked)).then(|| CreditState {
        blocked,
        balance: balance.to_string(),
        currency: currency.to_string(),
    })
}

#[cfg(test)]
#[path = "account_tests.rs"]
mod tests;
