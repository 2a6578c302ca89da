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
}

const NAMES: [&str; 5] = [
    "counter_calls",
    "forged_keys",
    "body_cap_hits",
    "response_cap_hits",
    "refused_routes",
];

thread_local! {
    static COUNTS: [Cell<u64>; 5] = const { [const { Cell::new(0) }; 5] };
}

pub fn bump(metric: Metric) {
    COUNTS.with(|c| {
        let cell = &c[metric as usize];
        cell.set(cell.get().saturating_add(1));
    });
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
