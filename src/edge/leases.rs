//! The isolate's quota leases (`crate::lease_holder::LeaseBook` decides): a request
//! admitted under one makes no counter call, and what it used is reported in batches
//! from requests' own `wait_until` (there are no timers outside a request).

use super::auth::Caller;
use super::client;
use super::metrics::{bump, Metric};
use crate::catalog::Catalog;
use crate::counter_state::check_bounded;
use crate::error::ApiError;
use crate::lease::{LeaseAnswer, LeaseAsk, REPORT_BACKOFF_MS};
use crate::lease_grant::bounds_of;
use crate::lease_holder::{Admission, Held, LeaseBook, Wake};
use crate::request::AdmitAsk;
use crate::tally::MeterKey;
use crate::usage::Metered;
use std::cell::RefCell;
use worker::{Context, Env};

thread_local! {
    static BOOK: RefCell<LeaseBook> = RefCell::new(LeaseBook::default());
}

/// A request admitted under a lease: where it finishes, and the tally it lands in.
pub struct Leased {
    pub admission: Admission,
    pub key: MeterKey,
}

/// Leases are per key, so a revoked key stops at its lease's end.
fn holder(caller: &Caller) -> String {
    format!("{}/{}", caller.counter, caller.key_hash)
}

/// Admits `ask` under the caller's lease, or `None`: then the counter decides. A
/// request the plan would refuse is never refused here, so the answer is the counter's.
pub fn admit(caller: &Caller, catalog: &Catalog, ask: &AdmitAsk, now: i64) -> Option<Leased> {
    let holder = holder(caller);
    let admission = BOOK.with(|b| {
        let mut book = b.borrow_mut();
        let plan = catalog.plan(book.plan(&holder, now)?)?;
        check_bounded(plan, ask).ok()?;
        let one = bounds_of(plan, catalog, ask);
        book.admit(&holder, &one, now)
    })?;
    bump(Metric::LeasedAdmissions);
    let key = (ask.meter.clone(), ask.model.clone());
    Some(Leased { admission, key })
}

/// Asks the counter for a lease for the caller's key, carrying what the old one owes.
/// A granted lease is held; the request is then admitted under it by [`admit`]. When
/// its window ends this request's `wait_until` returns it, so an isolate that goes
/// idle does not keep capacity from the others.
pub async fn ask(
    env: &Env,
    ctx: &Context,
    caller: &Caller,
    ask: AdmitAsk,
    now: i64,
) -> Result<LeaseAnswer, ApiError> {
    let holder = holder(caller);
    let reports = BOOK.with(|b| b.borrow_mut().retire(&holder, now));
    let req = LeaseAsk {
        key_hash: caller.key_hash.clone(),
        ask,
        reports: reports.clone(),
        now_ms: now,
    };
    let answer = client::lease(env, &caller.counter, req).await;
    BOOK.with(|b| {
        let mut book = b.borrow_mut();
        match &answer {
            Err(_) => book.failed(&caller.counter, &reports, now),
            Ok(LeaseAnswer::Granted {
                lease,
                plan,
                grant,
                window_ms,
                minute,
            }) => {
                let mut held = Held::new(*lease, plan.clone(), grant.clone(), now, *window_ms);
                held.minute = *minute;
                book.install(&holder, &caller.counter, *lease, held, now);
                let (env, counter) = (env.clone(), caller.counter.clone());
                let window = (*window_ms).max(0) as u64;
                ctx.wait_until(async move {
                    worker::Delay::from(std::time::Duration::from_millis(window)).await;
                    send(&env, &counter).await;
                });
            }
            Ok(LeaseAnswer::Alone { .. }) => {}
        }
    });
    answer
}

/// Ends this isolate's leases on `counter`; their reports return what they hold.
pub fn retire_counter(counter: &str) {
    let now = super::clock::now_ms();
    BOOK.with(|b| b.borrow_mut().retire_counter(counter, now));
}

/// Sends what `counter` is owed now, if anything, trying again after each failure
/// (`REPORT_BACKOFF_MS`), from a `wait_until`. Each report is cumulative, so a try
/// also carries what changed while it waited, and one that fails for good goes with
/// the next batch.
pub async fn send(env: &Env, counter: &str) {
    send_tries(env, counter, &REPORT_BACKOFF_MS).await;
}

/// One try of [`send`], for a request about to call the counter itself: it does not
/// wait out a failing counter's back-off.
pub async fn send_once(env: &Env, counter: &str) {
    send_tries(env, counter, &REPORT_BACKOFF_MS[..1]).await;
}

async fn send_tries(env: &Env, counter: &str, waits: &[u64]) {
    for (i, &wait) in waits.iter().enumerate() {
        if i > 0 {
            worker::Delay::from(std::time::Duration::from_millis(wait)).await;
        }
        let now = super::clock::now_ms();
        let reports = BOOK.with(|b| b.borrow_mut().take_at(counter, now));
        if reports.is_empty() {
            return;
        }
        // Boxed: a report is itself a counter call, which may send reports first.
        bump(Metric::LeaseReports);
        if Box::pin(client::report(env, counter, reports.clone())).await {
            return;
        }
        bump(Metric::LeaseReportFailures);
        let now = super::clock::now_ms();
        BOOK.with(|b| b.borrow_mut().failed(counter, &reports, now));
    }
}

/// Makes sure `counter`'s changes are reported within `REPORT_MS`: at once when a
/// batch is due, after a wait when no other request is already waiting to send, else
/// not at all (the pending waiter carries them). `None`: nothing to do.
fn report_soon(env: &Env, counter: &str) -> Option<impl std::future::Future<Output = ()>> {
    let now = super::clock::now_ms();
    let wake = BOOK.with(|b| b.borrow_mut().schedule(counter, now));
    let wait = match wake {
        Wake::Pending => return None,
        Wake::Now => 0,
        Wake::At(at) => at.saturating_sub(now).max(0) as u64,
    };
    let (env, counter) = (env.clone(), counter.to_string());
    Some(async move {
        if wait > 0 {
            worker::Delay::from(std::time::Duration::from_millis(wait)).await;
            BOOK.with(|b| b.borrow_mut().woke(&counter));
        }
        send(&env, &counter).await;
    })
}

/// After a local admission: its report goes out within `REPORT_MS`, so the counter
/// hears of it long before the lease's grace ends, however long the request runs.
pub fn reported_soon(ctx: &Context, env: &Env, admission: &Admission) {
    if let Some(report) = report_soon(env, &admission.counter) {
        ctx.wait_until(report);
    }
}

/// A request admitted under a lease finished (`None`: released, costing nothing). It
/// is recorded at once; what is returned sends its report, when this request is the
/// one to send it.
pub fn finish(
    env: &Env,
    leased: &Leased,
    metered: Option<Metered>,
) -> Option<impl std::future::Future<Output = ()>> {
    let now = super::clock::now_ms();
    let used = metered
        .as_ref()
        .map(|m| (&leased.key, &m.usage, m.estimated));
    BOOK.with(|b| b.borrow_mut().finish(&leased.admission, used, now));
    report_soon(env, &leased.admission.counter)
}

/// A running stream's heartbeat under a lease: a report, which moves its deadline.
pub async fn beat(env: &Env, admission: &Admission) {
    let now = super::clock::now_ms();
    BOOK.with(|b| b.borrow_mut().touch(admission, now));
    // One try: the stream waits on it, and the next beat or report carries a failure.
    send_once(env, &admission.counter).await;
}
