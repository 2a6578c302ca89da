//! `UsageCounter`: one Durable Object per customer, the source of truth for the
//! customer's current period. It verifies keys, admits and reserves, settles, and
//! reports usage. The arithmetic lives in `counter_state`; this file parses, calls it,
//! persists and answers. After the request body is read nothing awaits, so every
//! read-modify-write is atomic.

use super::counter_store::Store;
use super::http;
use crate::admission::KeyRow;
use crate::counter_state::CounterState;
use crate::error::ApiError;
use crate::protocol::*;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, State};

pub(super) struct Loaded {
    pub(super) customer: Customer,
    pub(super) state: CounterState,
    pub(super) keys: Vec<KeyRow>,
    /// Set by the rating side when a prepaid plan's credits are used up.
    pub(super) credit: Option<CreditState>,
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
            CounterCall::Lease(ask) => {
                let reported = !ask.reports.is_empty();
                let answer = self.lease(ask, now_ms);
                self.arm_deadlines(now_ms).await;
                if reported || self.expired_unpushed.take() {
                    self.schedule_push(now_ms).await;
                }
                answer
            }
            CounterCall::Report(reports) => {
                let reported = self.report(reports, now_ms);
                if reported.is_ok() {
                    self.schedule_push(now_ms).await;
                }
                reported
            }
            CounterCall::PushView => self.push_view(now_ms),
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
        super::metrics::bump(super::metrics::Metric::ObjectCalls);
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
            let customer = self.store.customer().map_err(stored)?;
            let customer = customer.ok_or_else(crate::admission::unknown_customer)?;
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
}
