//! A worker that flushes to its own rating endpoint, for the rating tests.

use super::upstream::FakeUpstream;
use super::wrangler::{scratch, Worker};

/// The `RATING_SECRET` those workers sign and check batches with.
pub const SECRET: &str = "whsec_rating_test";

/// A worker that flushes to its own rating endpoint, priced by `price_book`; its
/// counters push right after each change.
pub fn flushing_to_internal(name: &str, upstream: &FakeUpstream, price_book: &str) -> Worker {
    flushing_to_internal_with(name, upstream, price_book, &[])
}

/// [`flushing_to_internal`] with more `[vars]`.
pub fn flushing_to_internal_with(
    name: &str,
    upstream: &FakeUpstream,
    price_book: &str,
    extra: &[(&str, &str)],
) -> Worker {
    let mut vars = vec![
        ("RATING_URL", "internal"),
        ("RATING_SECRET", SECRET),
        ("FLUSH_SHARDS", "2"),
        ("FLUSH_BACKOFF_MS", "0"),
        ("FLUSH_PUSH_MS", "0"),
        ("PRICE_BOOK", price_book),
    ];
    vars.extend_from_slice(extra);
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

/// The first day (`YYYY-MM-DD`) of the current calendar month: the period invoices
/// are read for.
pub fn month_start() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    edgemeter::period::iso8601(edgemeter::period::period_at(now_ms, 1).start_ms)[..10].to_string()
}

/// The customer's invoice for the current month once `ready` says the flushed usage
/// has reached it, running the flush as it waits (at most a minute).
pub fn invoice_when(
    port: u16,
    id: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    invoice_on(port, id, &month_start(), ready)
}

/// The customer's invoice for the period starting on `date` (`YYYY-MM-DD`) once `ready`
/// says the flushed usage has reached it, running the flush as it waits (a minute at most).
pub fn invoice_on(
    port: u16,
    id: &str,
    date: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = format!("/rating/v1/customers/{id}/invoices/{date}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let run = super::admin(
            port,
            "POST",
            "/admin/v1/flush/run",
            &serde_json::Value::Null,
        );
        assert_eq!(run.status, 200, "{}", run.text());
        let r = rating_call(port, "GET", &path, &serde_json::Value::Null);
        assert_eq!(r.status, 200, "{}", r.text());
        let inv = r.json();
        if ready(&inv) {
            return inv;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage never reached the invoice: {inv}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A native batch of `records`, signed with `secret` now: (signature header, body).
pub fn signed_batch(
    records: Vec<edgemeter::flush::UsageRecord>,
    secret: &str,
) -> (String, Vec<u8>) {
    use edgemeter::flush::{render, signature, Batch, Format};
    let (_, body) = render(Format::Native, &Batch::new(records), 0);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (signature(secret, now_s, &body), body)
}

/// Posts `records` to the built-in rating endpoint as another sender would, signed
/// with [`SECRET`].
pub fn ingest(port: u16, records: Vec<edgemeter::flush::UsageRecord>) -> super::http::Resp {
    let (sig, body) = signed_batch(records, SECRET);
    let headers = [
        ("x-edgemeter-signature", sig.as_str()),
        ("content-type", "application/json"),
    ];
    super::http::request(port, "POST", "/rating/v1/ingest", &headers, &body)
}

/// A record of `requests` chat requests to gpt-4o-mini for `customer`'s period
/// `(start, end)`, covering sequence number `seq`, with its content's id: what another
/// sender posts to the rating endpoint.
pub fn record(
    customer: &str,
    period: (i64, i64),
    seq: u64,
    requests: u64,
) -> edgemeter::flush::UsageRecord {
    let mut r = edgemeter::flush::UsageRecord {
        customer: customer.into(),
        period_start_ms: period.0,
        period_end_ms: period.1,
        meter: "chat.completions".into(),
        model: "gpt-4o-mini".into(),
        seq_from: seq,
        seq_to: seq,
        requests,
        plan: "open".into(),
        recorded_at_ms: period.0,
        ..Default::default()
    };
    r.id = r.content_id();
    r
}
