//! A worker that flushes to its own rating endpoint, for the rating tests.

use super::upstream::FakeUpstream;
use super::wrangler::{scratch, Worker};

/// The `RATING_SECRET` those workers sign and check batches with.
pub const SECRET: &str = "whsec_rating_test";

/// A worker that flushes to its own rating endpoint, priced by `price_book`; its
/// counters push right after each change.
pub fn flushing_to_internal(name: &str, upstream: &FakeUpstream, price_book: &str) -> Worker {
    let vars = [
        ("RATING_URL", "internal"),
        ("RATING_SECRET", SECRET),
        ("FLUSH_SHARDS", "2"),
        ("FLUSH_BACKOFF_MS", "0"),
        ("FLUSH_PUSH_MS", "0"),
        ("PRICE_BOOK", price_book),
    ];
    Worker::start_with(&scratch(name), &upstream.url(), &super::catalog(), &vars)
}

/// A call to the rating API, which takes the admin token.
pub fn rating_call(
    port: u16,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> super::http::Resp {
    super::admin(port, method, path, body)
}

/// `PUT /rating/v1/customers/{id}/account`: the customer's price-book plan and account.
pub fn put_account(port: u16, id: &str, account: &serde_json::Value) -> super::http::Resp {
    let path = format!("/rating/v1/customers/{id}/account");
    rating_call(port, "PUT", &path, account)
}
