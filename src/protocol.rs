//! Messages between the Worker and its Durable Objects (a customer's counter, the
//! flush shards), typed. Kept in the core so both sides (and the tests) share one
//! definition.
//!
//! Enums here (and the lease answer and refusal they carry) are externally tagged,
//! serde's default (`{"ingest": [...]}`): a tagged or adjacently tagged enum also
//! compiles a buffered fallback deserializer for every payload type, which was about
//! 9% of the wasm. These messages never leave the deployment.

use crate::error::ApiError;
use crate::keys::Mode;
use crate::request::AdmitAsk;
use crate::surface::owned::{ListQuery, OwnedResource};
use crate::surface::ResourceKind;
use crate::tally::{MeterKey, Tally};
use crate::usage::Usage;
use serde::{Deserialize, Serialize};

/// A call to a Ledger shard: every message it takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerCall {
    /// Checked records of the shard's customers, any number of them.
    Ingest(Vec<crate::flush::UsageRecord>),
    /// A call about one customer's ledger, by its owner key (`flush::owner_key`: each
    /// mode has its own).
    Customer { owner: String, ask: LedgerAsk },
}

/// What a call about one customer's ledger asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerAsk {
    /// `{plan, account, livemode}`, checked by the Ledger against the price book.
    SetAccount(serde_json::Value),
    /// A credit grant as given, checked by the Ledger with the others.
    AddGrant(serde_json::Value),
    ListGrants,
    VoidGrant(String),
    Reconcile {
        customer: String,
        livemode: bool,
        at_ms: i64,
    },
    Invoice {
        period_start_ms: i64,
    },
    /// The invoice next to the one under a draft price book (its JSON text).
    Preview {
        period_start_ms: i64,
        price_book: String,
    },
}

/// A number for a final invoice, asked of the `InvoiceNumbers` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NumberAsk {
    pub owner: String,
    pub period_start_ms: i64,
}

/// A call to a flush shard: every message it takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardCall {
    /// A counter's records not yet acknowledged.
    Push(ShardPush),
    /// Send what waits (the cron run).
    Run,
    Stats,
    /// One page of the fleet reconciliation.
    Reconcile(FleetPage),
    /// Send the dead letters again.
    Requeue,
}

/// A counter's push: its records not yet acknowledged. A test-mode counter's are kept
/// under their own owner key, so neither counter's push forgets the other's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPush {
    pub customer: String,
    pub livemode: bool,
    pub records: Vec<crate::flush::UsageRecord>,
}

impl ShardPush {
    /// A counter's push of `records`. One counter meters one mode, so its records all
    /// carry it; a push holding any test record is kept as test usage, never live.
    pub fn of(customer: &str, records: &[crate::flush::UsageRecord]) -> ShardPush {
        ShardPush {
            customer: customer.to_string(),
            livemode: records.iter().all(|r| r.livemode),
            records: records.to_vec(),
        }
    }
}

/// A shard's page of the fleet reconciliation: its customers after `after`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetPage {
    pub at_ms: i64,
    #[serde(default)]
    pub after: String,
}

/// A call to a customer's counter object: every message it takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterCall {
    Admit(AdmitRequest),
    Settle(SettleRequest),
    Extend(ExtendRequest),
    /// A lease for an isolate, or the request decided on its own.
    Lease(crate::lease::LeaseAsk),
    /// An isolate's lease reports.
    Report(Vec<crate::lease::Report>),
    /// Where its pushes to the shard stand.
    PushView,
    /// Push new usage to the shard now, without waiting for the alarm.
    Push,
    /// Its side of the period containing this instant, for reconciliation.
    Reconcile(i64),
    ClosePeriod,
    /// The rating side's word on prepaid credits.
    Credit(CreditState),
    /// The current period's usage; with a key hash, only for that key's holder.
    Usage(Option<String>),
    Owned(OwnedChange),
    ListOwned(ListOwned),
    CreateCustomer {
        customer: CreateCustomer,
        live: bool,
    },
    ListKeys,
    IssueKey(IssueKey),
    /// Revoke the key with this id.
    RevokeKey(String),
}

/// Authenticate and reserve, in one round trip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdmitRequest {
    pub key_hash: String,
    pub ask: AdmitAsk,
    /// `Idempotency-Key` header and the SHA-256 of the body it was sent with.
    pub idempotency: Option<(String, String)>,
    /// Stored resources the request names: admitted only if this customer owns each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owns: Vec<(ResourceKind, String)>,
    pub now_ms: i64,
}

/// A stored response, replayed for a retried idempotent request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Replay {
    /// The answer to keep for a request's retries: only with an Idempotency-Key, and
    /// only a text body within `crate::stream_meter::REPLAY_LIMIT` (a retry of a larger
    /// one is told it was metered instead).
    pub fn keep(keyed: bool, status: u16, content_type: &str, body: &[u8]) -> Option<Replay> {
        if !keyed || body.len() > crate::stream_meter::REPLAY_LIMIT {
            return None;
        }
        let body = String::from_utf8(body.to_vec()).ok()?;
        Some(Replay {
            status,
            content_type: content_type.to_string(),
            body,
        })
    }

    /// The headers a replayed answer goes out with: it costs nothing again.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("content-type".to_string(), self.content_type.clone()),
            ("idempotent-replayed".to_string(), "true".to_string()),
            ("x-edgemeter-cost".to_string(), "0".to_string()),
        ]
    }
}

/// The settled totals of the customer's period at admission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendBasis {
    pub period: crate::period::Period,
    pub tallies: Vec<(MeterKey, Tally)>,
    /// Their spend, priced once by the counter.
    pub spent: rust_decimal::Decimal,
}

/// The counter's answer to an admission.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmitResponse {
    Admitted {
        reservation: u64,
        plan: String,
        /// Cost of the reserved estimate, an upper bound for a streamed request.
        reserved_cost: String,
        /// Output cap to add to a request that named none, when the plan's hard limits
        /// need one to be exact.
        output_cap: Option<u64>,
        headers: Vec<(String, String)>,
        /// Under pricing that depends on the period's totals, those totals, so the
        /// proxy can price the request as what it adds to them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spend_basis: Option<SpendBasis>,
        /// The usage reserved: the bound a request is billed at when the provider's
        /// answer cannot be read.
        #[serde(default)]
        reserved: Usage,
    },
    Replayed {
        replay: Replay,
    },
    /// A limit refused it: rendered once, by the proxy.
    Refused {
        refusal: crate::refusal::Refusal,
        headers: Vec<(String, String)>,
    },
    Rejected {
        status: u16,
        body: String,
        retry_after_s: Option<u64>,
        headers: Vec<(String, String)>,
    },
}

/// Whether prepaid credits still cover usage, as the rating side last said.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CreditState {
    pub blocked: bool,
    pub balance: String,
    pub currency: String,
}

/// Settle a reservation to actual usage (or release it when `usage` is `None`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettleRequest {
    pub reservation: u64,
    pub usage: Option<Usage>,
    pub estimated: bool,
    /// The response to keep for idempotent retries, when the request had a key.
    pub replay: Option<Replay>,
    /// The stored response this request created: its tokens are recorded with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_response: Option<String>,
    pub now_ms: i64,
}

/// A running request's heartbeat: keep its reservation alive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtendRequest {
    pub reservation: u64,
    pub now_ms: i64,
}

/// Ask a counter for its customer's files (`GET /v1/files`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListOwned {
    pub key_hash: String,
    pub query: ListQuery,
}

/// Record a resource created through the customer's key, or forget a deleted one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnedChange {
    Add(OwnedResource),
    Remove(ResourceKind, String),
}

/// A customer's current period as the usage endpoints show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageReport {
    pub customer: String,
    pub plan: String,
    pub currency: String,
    pub catalog_version: String,
    /// Where `totals.cost` and the spend cap's prices come from.
    pub priced_by: String,
    pub period_start: String,
    pub period_end: String,
    pub meters: Vec<MeterUsage>,
    pub totals: UsageTotals,
    pub remaining: Remaining,
    /// Leases closed without their holder's last report: the loss window leases add.
    #[serde(default)]
    pub lease_losses: crate::lease::LeaseLosses,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeterUsage {
    pub meter: String,
    pub model: String,
    #[serde(flatten)]
    pub tally: Tally,
    /// Exact cost as a decimal string, unrounded.
    pub cost: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageTotals {
    pub requests: u64,
    pub tokens: u64,
    /// Exact cost of the settled usage so far: under a price-book plan, the invoice's
    /// usage charges (included units and tiers applied); per meter, list prices.
    pub cost: String,
    pub in_flight: u64,
}

/// What is left of each period budget; `None` means unlimited.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Remaining {
    pub requests: Option<u64>,
    pub included_tokens: Option<u64>,
    pub spend: Option<String>,
}

impl MeterUsage {
    pub fn key(&self) -> MeterKey {
        (self.meter.clone(), self.model.clone())
    }
}

/// A customer as the counter stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub plan: String,
    /// Day of the month billing periods start on (1 = calendar months).
    pub anchor_day: u32,
    pub created_ms: i64,
    /// `false` on the customer's test-mode counter: its usage is never flushed.
    #[serde(default = "live")]
    pub livemode: bool,
}

fn live() -> bool {
    true
}

/// Admin request to create a customer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    pub id: String,
    pub plan: String,
    /// Day of the month periods start on; default 1 (calendar months).
    #[serde(default)]
    pub anchor_day: Option<u32>,
    /// Anchor periods to the day the customer is created instead.
    #[serde(default)]
    pub anchor_to_signup: bool,
}

/// Admin request to issue a key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// `test` (sandbox) or `live` (upstream); default `live`.
    #[serde(default)]
    pub mode: Option<String>,
}

impl IssueKey {
    /// The mode asked for: `live` when absent, a 400 naming `mode` when unknown.
    pub fn mode(&self) -> Result<Mode, ApiError> {
        match self.mode.as_deref().unwrap_or("live") {
            "live" => Ok(Mode::Live),
            "test" => Ok(Mode::Test),
            other => {
                let msg = format!("`mode` must be `test` or `live`, not `{other}`.");
                Err(ApiError::bad_request("invalid_value", msg).with_param("mode"))
            }
        }
    }
}

/// A stored key, as listed; the key itself is shown only once, when issued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub mode: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
