//! The counter's admission, settlement and usage report: each loads the counter, asks
//! the core (`crate::admission`, `crate::settlement`, `crate::report`) and stores what it
//! answers.

use super::counter::{stored, Loaded, UsageCounter};
use super::{config, http};
use crate::admission;
use crate::counter_state::carry_context;
use crate::error::ApiError;
use crate::pricing::Pricing;
use crate::protocol::*;
use crate::settlement::{self, Settled};
use worker::Response;

/// An error before any decision, as the proxy answers it.
pub(super) fn rejected(e: ApiError) -> AdmitResponse {
    AdmitResponse::Rejected {
        status: e.status,
        body: e.body(),
        retry_after_s: e.retry_after_s,
        headers: vec![],
    }
}

impl UsageCounter {
    pub(super) fn admit(&self, req: AdmitRequest) -> std::result::Result<Response, ApiError> {
        let answer = self.decide_admit(req)?;
        http::json_response(&answer, 200).map_err(http::internal)
    }

    /// The answer to one request reserved on its own (`crate::admission::decide`).
    pub(super) fn decide_admit(&self, req: AdmitRequest) -> Result<AdmitResponse, ApiError> {
        let catalog = config::catalog(&self.env)?;
        let book = config::price_book(&self.env).ok();
        let now = req.now_ms;
        let mut ask = req.ask.clone();
        let decided = self.with(now, |l| {
            admission::verify(&l.keys, &req.key_hash)?;
            let plan = catalog.plan(&l.customer.plan).ok_or_else(|| {
                ApiError::internal(format!("plan `{}` is not in the catalog", l.customer.plan))
            })?;
            for (kind, id) in &req.owns {
                let owned = self.check_owned(*kind, id)?;
                if kind.carries_context() {
                    carry_context(&mut ask, plan, Some((owned.input, owned.output)))?;
                }
            }
            self.expire_due(l, now)?;
            let prior = match &req.idempotency {
                Some((key, _)) => self.store.idempotency(key).map_err(stored)?,
                None => None,
            };
            let pricing = Pricing::for_plan(&catalog, book.as_deref(), &l.customer.plan);
            let held = admission::Held {
                plan_name: &l.customer.plan,
                plan,
                pricing: &pricing,
                credit: l.credit.as_ref(),
                prior,
            };
            let asked = admission::Asked {
                ask: &ask,
                idempotency: req.idempotency.as_ref(),
                now_ms: now,
            };
            let decision = admission::decide(&mut l.state, held, asked)?;
            if let Some(r) = &decision.reserved {
                self.store.save_reservation(r).map_err(stored)?;
                self.store.save_cursor(&l.state).map_err(stored)?;
                if let Some((key, hash)) = &req.idempotency {
                    self.store
                        .begin_idempotent(key, hash, r.id, now)
                        .map_err(stored)?;
                }
            }
            Ok(decision.answer)
        });
        Ok(decided.unwrap_or_else(rejected))
    }

    /// Stores what `crate::settlement::settle` decided.
    fn apply_settle(
        &self,
        l: &mut Loaded,
        req: SettleRequest,
    ) -> std::result::Result<(), ApiError> {
        let (id, now) = (req.reservation, req.now_ms);
        let usage = req.usage.as_ref();
        match settlement::settle(&mut l.state, id, usage, req.estimated, req.replay, now) {
            Settled::Unknown => return Ok(()),
            Settled::Released => {
                self.store.delete_reservation(id).map_err(stored)?;
                self.store.forget_idempotent(id, now).map_err(stored)?;
            }
            Settled::Landed {
                landing,
                late,
                replay,
            } => {
                self.store
                    .save_landing(l.state.period, &landing)
                    .map_err(stored)?;
                match late {
                    true => self.store.forget_expired(id),
                    false => self.store.delete_reservation(id),
                }
                .map_err(stored)?;
                self.store.save_cursor(&l.state).map_err(stored)?;
                if let Some(replay) = replay {
                    self.store.finish_idempotent(id, &replay).map_err(stored)?;
                }
                return Ok(());
            }
        }
        self.store.save_cursor(&l.state).map_err(stored)
    }

    /// The rating side's word on prepaid credits: usage blocked or allowed again.
    pub(super) fn set_credit(
        &self,
        c: CreditState,
        now: i64,
    ) -> std::result::Result<Response, ApiError> {
        self.store.save_credit_state(&c).map_err(stored)?;
        self.with(now, |l| {
            l.credit = Some(c);
            Ok(())
        })?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    pub(super) fn settle(&self, req: SettleRequest) -> std::result::Result<Response, ApiError> {
        if let (Some(id), Some(u)) = (&req.stored_response, &req.usage) {
            self.note_response_tokens(id, u.input, u.output)?;
        }
        self.with(req.now_ms, |l| self.apply_settle(l, req))?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    /// The current period's usage; with a key hash, only for that key's holder.
    pub(super) fn usage(
        &self,
        key_hash: Option<String>,
        now: i64,
    ) -> std::result::Result<Response, ApiError> {
        let catalog = config::catalog(&self.env)?;
        let book = config::price_book(&self.env).ok();
        let report = self.with(now, |l| {
            if let Some(h) = &key_hash {
                admission::verify(&l.keys, h)?;
            }
            l.state.roll(now);
            let pricing = Pricing::for_plan(&catalog, book.as_deref(), &l.customer.plan);
            Ok(crate::report::build(&pricing, &l.customer, &l.state))
        });
        let report = match &key_hash {
            None => report.map_err(admission::for_admin)?,
            Some(_) => report?,
        };
        http::json_response(&report, 200).map_err(http::internal)
    }
}
