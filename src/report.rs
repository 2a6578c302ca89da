//! The usage report a customer (`GET /v1/usage`) or an admin sees: the current period's
//! usage per meter and model, exact costs, and what is left of each budget.

use crate::catalog::cost_of;
use crate::counter_state::CounterState;
use crate::period::iso8601;
use crate::pricing::Pricing;
use crate::protocol::{Customer, MeterUsage, Remaining, UsageReport, UsageTotals};

/// Builds the report for `state`'s current period.
pub fn build(pricing: &Pricing, customer: &Customer, state: &CounterState) -> UsageReport {
    let catalog = pricing.catalog();
    let meters: Vec<MeterUsage> = state
        .tallies
        .iter()
        .map(|((meter, model), tally)| MeterUsage {
            meter: meter.clone(),
            model: model.clone(),
            tally: *tally,
            cost: cost_of(catalog, model, &tally.usage(), tally.requests)
                .normalize()
                .to_string(),
        })
        .collect();
    let used = state.totals(pricing);
    let plan = catalog.plan(&customer.plan);
    let left = |limit: Option<u64>, used: u64| limit.map(|l| l.saturating_sub(used));
    let settled_tokens: u64 = state.tallies.values().map(|t| t.usage().tokens()).sum();
    let settled_requests: u64 = state.tallies.values().map(|t| t.requests).sum();
    // Settled usage only (reservations excluded), priced as the invoice will price it.
    let settled_cost = pricing.spend(state.period, &state.tallies);
    UsageReport {
        customer: customer.id.clone(),
        plan: customer.plan.clone(),
        currency: catalog.currency.clone(),
        catalog_version: catalog.version.clone(),
        priced_by: pricing.label(),
        period_start: iso8601(state.period.start_ms),
        period_end: iso8601(state.period.end_ms),
        meters,
        totals: UsageTotals {
            requests: settled_requests,
            tokens: settled_tokens,
            cost: settled_cost.normalize().to_string(),
            // Reservations, and requests running under isolates' leases as their last
            // reports say (not the concurrency a lease holds unused).
            in_flight: (state.reservations.len() as u64).saturating_add(state.leased_running()),
        },
        remaining: Remaining {
            requests: left(
                plan.and_then(|p| p.requests_per_period),
                used.period_requests,
            ),
            included_tokens: left(plan.and_then(|p| p.included_tokens), used.period_tokens),
            spend: plan.and_then(|p| p.spend_cap).map(|cap| {
                let left = (cap - used.period_spend).max(rust_decimal::Decimal::ZERO);
                left.normalize().to_string()
            }),
        },
        lease_losses: state.lease_losses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::AdmitAsk;
    use crate::usage::Usage;

    #[test]
    fn report_shows_usage_cost_and_remaining_budget() {
        let catalog = crate::fixtures::catalog();
        let customer = Customer {
            livemode: true,
            id: "acme".into(),
            plan: "starter".into(),
            anchor_day: 1,
            created_ms: 0,
        };
        let now = 1_764_547_200_000;
        let mut s = CounterState::new(1, now);
        let ask = AdmitAsk {
            meter: "chat.completions".into(),
            model: "gpt-4o".into(),
            input_estimate: 10,
            input_reserve: 10,
            output_cap: Some(10),
            choices: 1,
            ..AdmitAsk::default()
        };
        let plan = catalog.plan("starter").unwrap();
        let r = s.admit(&Pricing::List(&catalog), plan, &ask, now).unwrap();
        s.settle(
            r.id,
            &Usage {
                input: 1000,
                output: 100,
                ..Usage::default()
            },
            false,
            now,
        );
        let report = build(&Pricing::List(&catalog), &customer, &s);
        // gpt-4o: 1000*2.50/1e6 + 100*10/1e6 = 0.0025 + 0.001 = 0.0035
        assert_eq!(report.meters[0].cost, "0.0035");
        assert_eq!(report.totals.cost, "0.0035");
        assert_eq!((report.totals.requests, report.totals.tokens), (1, 1100));
        // starter includes 1,000,000 tokens and caps spend at 20.00
        assert_eq!(report.remaining.included_tokens, Some(998_900));
        assert_eq!(report.remaining.spend.as_deref(), Some("19.9965"));
        assert_eq!(report.period_start, "2025-12-01T00:00:00Z");
    }
}
