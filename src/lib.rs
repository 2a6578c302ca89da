//! edgemeter: a metered, quota-enforcing proxy for AI APIs on Cloudflare Workers.
//!
//! The pure core (everything but `edge`) has no runtime dependency and is tested
//! natively; `edge` is the thin Workers glue and only builds for wasm32.
//!
//! The pipeline, and which module decides each step:
//!
//! ```text
//!  proxy ──────────────► meter ─────────────────► flush ──────────────────► rate
//!  surface   (the route)   counter_state (admit,    flush::snapshot (take,     ledger (ingest a batch)
//!  request   (prepare)       reserve, settle)        acknowledge)              rating (price a period)
//!  bounds    (worst case)  quota, reservation       flush::wake (when)         finality (final invoices,
//!  usage, sse,             pricing (spend, one      flush (ids, batches,         late usage, numbers)
//!   stream_meter (observe)   engine with rating)     formats, signatures)      reconcile (audit)
//!  sandbox (test keys)     tally (what is counted)
//! ```
//!
//! Beside the pipeline: `catalog` (models, plans, quotas), `keys` (API keys),
//! `protocol` (messages between the proxy and the Durable Objects), `report` (a
//! customer's usage), `period`, `settings_check`, `test_clock`, `error`.

pub mod admission;
pub mod bounds;
pub mod catalog;
pub mod counter_state;
pub mod customer;
pub mod error;
pub mod finality;
#[cfg(test)]
mod fixtures;
pub mod flush;
pub mod invoice_numbers;
pub mod json_path;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod period;
pub mod prepare;
pub mod pricing;
pub mod prompt_size;
pub mod protocol;
pub mod quota;
pub mod rating;
pub mod reconcile;
pub mod refusal;
pub mod report;
pub mod request;
pub mod reservation;
pub mod restore;
pub mod sandbox;
pub mod settings_check;
pub mod settlement;
pub mod sse;
pub mod stream_meter;
pub mod surface;
pub mod tally;
pub mod test_clock;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod edge;
