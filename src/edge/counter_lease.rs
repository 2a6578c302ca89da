//! The counter's side of quota leases: it applies an isolate's reports, and grants a
//! lease (`CounterState::grant_lease` decides) or decides the request on its own.

use super::counter::{stored, Loaded, UsageCounter};
use super::counter_admit::rejected;
use super::{config, http};
use crate::admission;
use crate::error::ApiError;
use crate::lease::{LeaseAnswer, LeaseAsk, Report};
use crate::pricing::Pricing;
use crate::protocol::AdmitRequest;
use worker::Response;

impl UsageCounter {
    /// Stores what each report landed and what it changed of its lease.
    fn apply_reports(&self, l: &mut Loaded, reports: &[Report], now: i64) -> Result<(), ApiError> {
        for report in reports {
            let Some(applied) = l.state.apply_report(report, now) else {
                continue;
            };
            for landing in &applied.landings {
                let period = l.state.period;
                self.store.save_landing(period, landing).map_err(stored)?;
            }
            self.store
                .save_lease_change(&applied.change)
                .map_err(stored)?;
            self.store.save_cursor(&l.state).map_err(stored)?;
        }
        Ok(())
    }

    /// An isolate's lease reports.
    pub(super) fn report(&self, reports: Vec<Report>, now: i64) -> Result<Response, ApiError> {
        self.with(now, |l| self.apply_reports(l, &reports, now))?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    /// A lease for the asking isolate's key, judged by the counter's clock (`now`); or,
    /// when none can be granted, the request decided on its own.
    pub(super) fn lease(&self, req: LeaseAsk, now: i64) -> Result<Response, ApiError> {
        let catalog = config::catalog(&self.env)?;
        let book = config::price_book(&self.env).ok();
        let granted = self.with(now, |l| {
            self.apply_reports(l, &req.reports, now)?;
            admission::verify(&l.keys, &req.key_hash)?;
            if l.credit.as_ref().is_some_and(|c| c.blocked) {
                return Ok(None);
            }
            let Some(plan) = catalog.plan(&l.customer.plan) else {
                return Ok(None);
            };
            self.expire_due(l, now)?;
            let pricing = Pricing::for_plan(&catalog, book.as_deref(), &l.customer.plan);
            let Ok(Some(lease)) = l.state.grant_lease(&pricing, plan, &req.ask, now) else {
                return Ok(None);
            };
            let change = crate::lease::LeaseChange::Store(Box::new(lease.clone()));
            self.store.save_lease_change(&change).map_err(stored)?;
            self.store.save_cursor(&l.state).map_err(stored)?;
            let m = l.state.minute_totals();
            Ok(Some(LeaseAnswer::Granted {
                minute: (m.minute_requests, m.minute_tokens),
                lease: lease.id,
                plan: l.customer.plan.clone(),
                window_ms: lease.until_ms - now,
                grant: lease.grant,
            }))
        });
        let answer = match granted {
            Ok(Some(granted)) => granted,
            Ok(None) => {
                let alone = AdmitRequest {
                    key_hash: req.key_hash,
                    ask: req.ask,
                    idempotency: None,
                    owns: vec![],
                    now_ms: req.now_ms,
                };
                LeaseAnswer::Alone {
                    admit: self.decide_admit(alone)?,
                }
            }
            Err(e) => LeaseAnswer::Alone { admit: rejected(e) },
        };
        http::json_response(&answer, 200).map_err(http::internal)
    }
}
