//! The counter's decision to grant a lease, and how large: a share of what is left of
//! each limit, or none (the request is reserved on its own) when that share is too
//! small to be worth it, or when a limit cannot be judged away from the counter.

use crate::catalog::{cost_of, Catalog, Plan};
use crate::counter_state::{check_bounded, reserve_of, CounterState};
use crate::lease::*;
use crate::pricing::Pricing;
use crate::quota::{self, Ask, Totals, MINUTE_MS};
use crate::refusal::Refusal;
use crate::request::AdmitAsk;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// Whether a plan's limits can be leased at all: a price book prices each request
/// against the period's whole usage (tiers), so its plans reserve per request.
pub fn leasable(pricing: &Pricing) -> bool {
    !pricing.needs_totals()
}

/// One request's bounds: what a lease's holder takes from it to admit the request.
pub fn bounds_of(plan: &Plan, catalog: &Catalog, ask: &AdmitAsk) -> Slice {
    let reserve = reserve_of(plan, ask);
    let cost = match plan.spend_cap {
        Some(_) => cost_of(catalog, &ask.model, &reserve, 1),
        None => Decimal::ZERO,
    };
    Slice {
        requests: 1,
        tokens: reserve.tokens(),
        cost,
    }
}

fn left(limit: Option<u64>, used: u64) -> Option<u64> {
    limit.map(|l| l.saturating_sub(used))
}

fn least(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The lease for a holder whose request needs `one`, given the totals: `None` when
/// what is left makes a share smaller than [`MIN_LEASE_REQUESTS`] such requests.
pub fn size(plan: &Plan, t: &Totals, one: &Slice) -> Option<Grant> {
    let requests = least(
        left(plan.requests_per_minute, t.minute_requests),
        left(plan.requests_per_period, t.period_requests),
    );
    let hard_tokens = match plan.token_cap {
        crate::catalog::Cap::Hard => plan.included_tokens,
        crate::catalog::Cap::Soft => None,
    };
    let tokens = least(
        left(plan.tokens_per_minute, t.minute_tokens),
        left(hard_tokens, t.period_tokens),
    )
    .map(|l| l / SHARE);
    let cost = plan
        .spend_cap
        .map(|cap| (cap - t.period_spend).max(Decimal::ZERO) / Decimal::from(SHARE));
    let mut n = requests.map_or(MAX_LEASE_REQUESTS, |l| l / SHARE);
    n = n.min(MAX_LEASE_REQUESTS);
    if let Some(tokens) = tokens {
        n = n.min(tokens / one.tokens.max(1));
    }
    if let (Some(cost), true) = (cost, one.cost > Decimal::ZERO) {
        n = n.min((cost / one.cost).floor().to_u64().unwrap_or(u64::MAX));
    }
    let concurrent = left(plan.max_concurrent, t.in_flight).map(|l| l / SHARE);
    if n < MIN_LEASE_REQUESTS || concurrent.is_some_and(|c| c < MIN_LEASE_REQUESTS) {
        return None;
    }
    Some(Grant {
        requests: n,
        tokens,
        cost,
        concurrent,
    })
}

impl CounterState {
    /// A lease for a holder whose request asks `ask`, or `Ok(None)` when the request is
    /// to be reserved on its own. A request the plan refuses outright is refused here,
    /// as it would be on its own.
    pub fn grant_lease(
        &mut self,
        pricing: &Pricing,
        plan: &Plan,
        ask: &AdmitAsk,
        now_ms: i64,
    ) -> Result<Option<Lease>, Refusal> {
        self.roll(now_ms);
        check_bounded(plan, ask)?;
        if !leasable(pricing) {
            return Ok(None);
        }
        let one = bounds_of(plan, pricing.catalog(), ask);
        let totals = self.totals(pricing);
        let want = Ask {
            tokens: one.tokens,
            cost: one.cost,
        };
        quota::admit(plan, &totals, &want, now_ms, self.period.end_ms)?;
        let Some(grant) = size(plan, &totals, &one) else {
            return Ok(None);
        };
        let minute_end = (self.window.index + 1).saturating_mul(MINUTE_MS);
        let until_ms = (now_ms + LEASE_MS).min(minute_end).min(self.period.end_ms);
        let lease = Lease {
            id: self.next_id,
            period: self.period,
            minute: self.window.index,
            grant,
            granted_ms: now_ms,
            until_ms,
            deadline_ms: until_ms.saturating_add(RELEASE_GRACE_MS),
            report: Report {
                lease: self.next_id,
                ..Report::default()
            },
            closed: false,
        };
        self.next_id += 1;
        self.leases.insert(lease.id, lease.clone());
        Ok(Some(lease))
    }
}
