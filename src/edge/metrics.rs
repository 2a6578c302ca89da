//! Per-isolate counters of what the surface refused or capped, and of the Durable
//! Object calls the Worker makes, so a test can show which guard stopped a request (a
//! status alone cannot: local workerd has no production memory limit). Served by
//! `GET /admin/v1/metrics`; they reset when the isolate does.

use std::cell::Cell;

#[derive(Clone, Copy)]
pub enum Metric {
    CounterCalls,
    ForgedKeys,
    BodyCapHits,
    ResponseCapHits,
    RefusedRoutes,
    /// A counter's alarm could not be set after three tries.
    AlarmSetFailures,
    /// Settlements that needed another try, and those that failed every try (their
    /// reservations expire at their bound).
    SettleRetries,
    SettleFailures,
    /// Streams the client left before they ended, and those of them whose usage did
    /// not arrive within the abort budget (billed at their reservation).
    StreamsAborted,
    AbortsBilledAtBound,
    HeartbeatFailures,
    /// SQLite rows the isolate's Durable Objects wrote and read (what storage bills).
    RowsWritten,
    RowsRead,
    /// Requests admitted under a lease, with no counter call; lease reports sent, and
    /// those that failed (sent again with the next).
    LeasedAdmissions,
    LeaseReports,
    LeaseReportFailures,
    /// Every Durable Object request the isolate makes or serves as an alarm: what
    /// Durable Objects bill as requests.
    ObjectCalls,
    /// Metered requests the entry's common case answered (`edge::fast`).
    FastPath,
}

const NAMES: [&str; COUNT] = [
    "counter_calls",
    "forged_keys",
    "body_cap_hits",
    "response_cap_hits",
    "refused_routes",
    "alarm_set_failures",
    "settle_retries",
    "settle_failures",
    "streams_aborted",
    "aborts_billed_at_bound",
    "heartbeat_failures",
    "rows_written",
    "rows_read",
    "leased_admissions",
    "lease_reports",
    "lease_report_failures",
    "object_calls",
    "fast_path",
];

const COUNT: usize = 18;

thread_local! {
    static COUNTS: [Cell<u64>; COUNT] = const { [const { Cell::new(0) }; COUNT] };
}

pub fn bump(metric: Metric) {
    bump_by(metric, 1);
}

pub fn bump_by(metric: Metric, n: u64) {
    COUNTS.with(|c| {
        let cell = &c[metric as usize];
        cell.set(cell.get().saturating_add(n));
    });
}

/// The counts of the usage loss windows that remain: settlements that failed every
/// try, aborted streams billed at their bound, alarms that could not be set.
pub fn loss_windows() -> serde_json::Value {
    let all = snapshot();
    let pick = [
        "settle_retries",
        "settle_failures",
        "streams_aborted",
        "aborts_billed_at_bound",
        "heartbeat_failures",
        "alarm_set_failures",
    ];
    pick.iter()
        .map(|k| (k.to_string(), all[*k].clone()))
        .collect()
}

pub fn snapshot() -> serde_json::Value {
    COUNTS.with(|c| {
        let map = NAMES
            .iter()
            .zip(c.iter())
            .map(|(n, v)| (n.to_string(), serde_json::Value::from(v.get())))
            .collect();
        serde_json::Value::Object(map)
    })
}
