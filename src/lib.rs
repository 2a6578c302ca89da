//! edgemeter: a metered, quota-enforcing proxy for AI APIs on Cloudflare Workers.
//!
//! The pure core (everything but `edge`) has no runtime dependency and is tested
//! natively; `edge` is the thin Workers glue and only builds for wasm32.
//!
//! The pipeline, and which module decides each step:
//!
//! ```text
//!  proxy ───────────────► meter ─────────────────► flush ───────────────────► rate
//!  surface  (the route)    admission (key, idem-    flush::push (counter →     ledger (ingest a batch)
//!  prepare  (read and        potency, credits,        shard: take, ack)        ledger::books (which
//!            prepare)        limits, output cap)    flush::outbox (shard's       invoice serves, draws,
//!  request, bounds         refusal (typed 429)        accept rule)               corrections)
//!   (worst case)           counter_state, settle-   flush::delivery (shard →   ledger::account
//!  usage, sse,               ment (reserve, settle,   receiver: outcomes,      rating (price a period)
//!   stream_meter (observe)   release, expire)         dead letters, back-off)  finality, invoice_numbers
//!  sandbox (test keys)     quota, reservation,      flush::wake (when)         reconcile (audit)
//!                            restore, pricing       flush (ids, formats)
//! ```
//!
//! "Push" is the counter handing records to its shard; "delivery" is the shard sending
//! them to the receiver; a flush is both.
//!
//! Beside the pipeline: `catalog` (models, plans, quotas), `customer`, `keys` (API
//! keys), `limits` (settings' defaults), `protocol` (the typed messages to each Durable
//! Object), `report` (a customer's usage), `period`, `settings_check`, `test_clock`,
//! `error` (one error type, keeping its cause).

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
pub mod lease;
pub mod lease_grant;
pub mod lease_holder;
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
