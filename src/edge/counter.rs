//! `UsageCounter`: one Durable Object per customer, the source of truth for the
//! customer's current period. It verifies keys, admits and reserves, settles, and
//! reports usage. The arithmetic lives in `counter_state`; this file parses, calls it,
//! persists and answers. After the request body is read nothing awaits, so every
//! read-modify-write is atomic.

use super::counter_store::Store;
use super::{config, http};
use crate::admission::{self, KeyRow};
use crate::counter_state::{carry_context, CounterState};
use crate::error::ApiError;
use crate::pricing::Pricing;
use crate::protocol::*;
use crate::settlement::{self, Settled};
use crate::surface::ResourceKind;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, State};

pub(super) struct Loaded {
    pub(super) customer: Customer,
    pub(super) state: CounterState,
    pub(super) keys: Vec<KeyRow>,
    /// Set by the rating side when a prepaid plan's credits are used up.
    credit: Option<CreditState>,
}

#[durable_object]
pub struct UsageCounter {
    pub(super) state: State,
    pub(super) env: Env,
    pub(super) store: Store,
    pub(super) mem: RefCell<Option<Loaded>>,
    /// The last push and the alarm set, as last read or written, so a settlement does
    /// not read the flush state from storage each time.
    pub(super) push_clock: std::cell::Cell<Option<crate::flush::wake::PushClock>>,
    /// A push is awaiting the shard; another one waits for the next alarm.
    pub(super) pushing: std::cell::Cell<bool>,
    /// An admission expired reservations: their usage is pushed like a settlement's.
    pub(super) expired_unpushed: std::cell::Cell<bool>,
}

pub(super) fn body<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(ApiError::invalid_json)
}

pub(super) fn stored(e: worker::Error) -> ApiError {
    ApiError::internal(format!("counter storage: {e}")).caused_by(e)
}

impl DurableObject for UsageCounter {
    fn new(state: State, env: Env) -> Self {
        let store = Store::new(state.storage().sql());
        UsageCounter {
            state,
            env,
            store,
            mem: RefCell::new(None),
            push_clock: std::cell::Cell::new(None),
            pushing: std::cell::Cell::new(false),
            expired_unpushed: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = self.store.ready() {
            return http::error_response(
                &ApiError::unavailable(format!("counter storage: {e}")),
                &[],
            );
        }
        let bytes = req.bytes().await.unwrap_or_default();
        let now_ms = super::clock::now_ms();
        let call = match body::<CounterCall>(&bytes) {
            Ok(call) => call,
            Err(e) => return http::error_response(&e, &[]),
        };
        let result = match call {
            CounterCall::Admit(r) => {
                let admitted = self.admit(r);
                self.arm_deadlines(now_ms).await;
                if self.expired_unpushed.take() {
                    self.schedule_push(now_ms).await;
                }
                admitted
            }
            CounterCall::Settle(r) => {
                let settled = self.settle(r);
                if settled.is_ok() {
                    self.schedule_push(now_ms).await;
                }
                settled
            }
            CounterCall::Extend(r) => self.extend(r),
            CounterCall::PushView => self.flush_view(now_ms),
            CounterCall::Reconcile(at) => self.reconcile_view(at, now_ms),
            CounterCall::Push => match self.push(now_ms).await {
                Ok(v) => http::json_response(&v, 200).map_err(http::internal),
                Err(e) => Err(e),
            },
            CounterCall::ClosePeriod => self.close_period(now_ms).await,
            CounterCall::Credit(c) => self.set_credit(c, now_ms),
            CounterCall::Usage(h) => self.usage(h, now_ms),
            CounterCall::Owned(c) => self.change_owned(c),
            CounterCall::ListOwned(q) => self.list_owned(q, now_ms),
            CounterCall::CreateCustomer { customer, live } => self.create(customer, live, now_ms),
            CounterCall::ListKeys => self.list_keys(),
            CounterCall::IssueKey(k) => self.issue_key(k, now_ms),
            CounterCall::RevokeKey(id) => self.revoke(&id, now_ms),
        };
        http::respond(result)
    }

    /// Expires reservations past their deadline, then pushes the changes that came
    /// within the push interval, retries a failed push, or sends a period's final
    /// records. A failed push sets its own retry, so the alarm itself always succeeds.
    async fn alarm(&self) -> Result<Response> {
        self.store.ready()?;
        let now_ms = super::clock::now_ms();
        self.forget_alarm();
        let next_deadline = self.with(now_ms, |l| {
            self.expire_due(l, now_ms)?;
            Ok(l.state.next_deadline())
        });
        if let Err(e) = self.push(now_ms).await {
            worker::console_error!("flush push: {}", e.message);
        }
        match next_deadline {
            Ok(Some(at)) => self.ensure_alarm(at).await,
            Ok(None) => {}
            Err(e) => worker::console_error!("expiring reservations: {}", e.message),
        }
        Response::empty()
    }
}

impl UsageCounter {
    /// Runs `f` on the loaded counter, loading it from storage on first use.
    pub(super) fn with<T>(
        &self,
        now_ms: i64,
        f: impl FnOnce(&mut Loaded) -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, ApiError> {
        let mut mem = self.mem.borrow_mut();
        if mem.is_none() {
            let unknown = || ApiError::unauthorized("Incorrect API key provided.");
            let customer = self.store.customer().map_err(stored)?.ok_or_else(unknown)?;
            let state = self
                .store
                .load_state(customer.anchor_day, now_ms)
                .map_err(stored)?;
            let keys = self.store.keys().map_err(stored)?;
            let credit = self.store.credit_state().map_err(stored)?;
            *mem = Some(Loaded {
                customer,
                state,
                keys,
                credit,
            });
        }
        f(mem.as_mut().expect("loaded above"))
    }

    fn admit(&self, req: AdmitRequest) -> std::result::Result<Response, ApiError> {
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
                if *kind == ResourceKind::Response {
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
        let answer = decided.unwrap_or_else(|e| AdmitResponse::Rejected {
            status: e.status,
            body: e.body(),
            retry_after_s: e.retry_after_s,
            headers: vec![],
        });
        http::json_response(&answer, 200).map_err(http::internal)
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
                if let Some(replay) = replay {
                    self.store.finish_idempotent(id, &replay).map_err(stored)?;
                }
            }
        }
        self.store.save_cursor(&l.state).map_err(stored)
    }

    /// The rating side's word on prepaid credits: usage blocked or allowed again.
    fn set_credit(&self, c: CreditState, now: i64) -> std::result::Result<Response, ApiError> {
        self.store.save_credit_state(&c).map_err(stored)?;
        self.with(now, |l| {
            l.credit = Some(c);
            Ok(())
        })?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    fn settle(&self, req: SettleRequest) -> std::result::Result<Response, ApiError> {
        if let (Some(id), Some(u)) = (&req.stored_response, &req.usage) {
            self.note_response_tokens(id, u.input, u.output)?;
        }
        self.with(req.now_ms, |l| self.apply_settle(l, req))?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    /// The current period's usage; with a key hash, only for that key's holder.
    fn usage(&self, key_hash: Option<String>, now: i64) -> std::result::Result<Response, ApiError> {
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
        // An admin asking about a customer that does not exist gets 404, not 401.
        let report = report.map_err(|e| match (&key_hash, e.status) {
            (None, 401) => ApiError::not_found("No such customer."),
            _ => e,
        })?;
        http::json_response(&report, 200).map_err(http::internal)
    }
}
