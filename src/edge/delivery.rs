//! Sending one signed batch to the rating endpoint, with a timeout, and classifying the
//! answer: delivered, worth retrying, or refused for good (kept aside, never dropped).

use super::config;
use crate::flush::delivery::{batch_records, internal_outcome, outcome_of, timeout_ms};
use crate::flush::delivery::{Outcome, TIMEOUT_MS};
use crate::flush::DEFAULT_BATCH_RECORDS;
use crate::flush::{endpoint, render_for, signature, Batch, Format, Subscriptions};

use futures_util::future::{select, Either};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{Delay, Env, Fetch, Headers, Method, Request, RequestInit};

/// Where and how batches go, from `RATING_URL`, `RATING_FORMAT`, `RATING_SECRET`,
/// `RATING_AUTH`, `FLUSH_BATCH_RECORDS`, `FLUSH_TIMEOUT_MS` and, for Lago, the
/// catalog's `subscriptions`.
pub struct Receiver {
    pub url: String,
    pub format: Format,
    pub secret: String,
    /// Sent as `Authorization: Bearer …`, as Lago and OpenMeter expect.
    pub auth: Option<String>,
    pub subscriptions: Subscriptions,
    pub batch_records: usize,
    pub timeout_ms: u64,
}

impl Receiver {
    pub fn from_env(env: &Env) -> Result<Receiver, String> {
        let url = config::setting(env, "RATING_URL").ok_or("RATING_URL is not set")?;
        let name = config::setting(env, "RATING_FORMAT").unwrap_or_default();
        let format = Format::parse(&name).ok_or(format!(
            "RATING_FORMAT `{name}` is not native, cloudevents or lago"
        ))?;
        let secret = config::setting(env, "RATING_SECRET")
            .ok_or("RATING_SECRET is not set: batches must be signed")?;
        let number = |name: &str| config::setting(env, name);
        let subscriptions = match format {
            Format::Lago => config::catalog(env)
                .map_err(|e| e.message)?
                .subscriptions
                .clone(),
            _ => Subscriptions::new(),
        };
        Ok(Receiver {
            url: match url.as_str() {
                "internal" => url,
                _ => endpoint(format, &url),
            },
            format,
            secret,
            auth: config::setting(env, "RATING_AUTH"),
            subscriptions,
            batch_records: batch_records(number("FLUSH_BATCH_RECORDS").as_deref(), format),
            timeout_ms: timeout_ms(number("FLUSH_TIMEOUT_MS").as_deref()),
        })
    }
}

impl Receiver {
    /// The built-in rating endpoint, in the native format.
    pub fn internal(secret: String) -> Receiver {
        Receiver {
            url: "internal".into(),
            format: Format::Native,
            secret,
            auth: None,
            subscriptions: Subscriptions::new(),
            batch_records: DEFAULT_BATCH_RECORDS,
            timeout_ms: TIMEOUT_MS,
        }
    }
}

/// A rendered batch, kept as sent so it can be sent again byte for byte.
pub struct Rendered {
    pub batch_id: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub fn render_batch(r: &Receiver, batch: &Batch, now_ms: i64) -> Rendered {
    let (content_type, body) = render_for(r.format, batch, now_ms, &r.subscriptions);
    Rendered {
        batch_id: batch.batch_id.clone(),
        content_type: content_type.into(),
        body,
    }
}

/// Signs (at wall-clock time) and posts a rendered batch, waiting at most the
/// receiver's timeout. With `RATING_URL=internal` the built-in rating endpoint takes it
/// directly, with the same payload and signature check.
pub async fn deliver(env: &Env, r: &Receiver, b: &Rendered) -> Outcome {
    if super::faults::delivery_fails() {
        return Outcome::Retry("an injected delivery failure".into());
    }
    if r.url == "internal" {
        let signed = signature(&r.secret, super::clock::wall_ms() / 1000, &b.body);
        let answer = match super::rating_api::ingest(env, &signed, &b.body).await {
            Ok(mut answer) => Ok(answer.text().await.unwrap_or_default()),
            Err(e) => Err((e.status, e.message)),
        };
        return internal_outcome(answer);
    }
    let sent = async {
        let headers = Headers::new();
        headers.set("content-type", &b.content_type)?;
        headers.set(
            "x-edgemeter-signature",
            &signature(&r.secret, super::clock::wall_ms() / 1000, &b.body),
        )?;
        headers.set("x-edgemeter-batch-id", &b.batch_id)?;
        if let Some(token) = &r.auth {
            headers.set("authorization", &format!("Bearer {token}"))?;
        }
        headers.set("idempotency-key", &b.batch_id)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers);
        init.with_body(Some(JsValue::from(worker::js_sys::Uint8Array::from(
            b.body.as_slice(),
        ))));
        let mut resp = Fetch::Request(Request::new_with_init(&r.url, &init)?)
            .send()
            .await?;
        let status = resp.status_code();
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, worker::Error>((status, text))
    };
    let timeout = Delay::from(Duration::from_millis(r.timeout_ms));
    match select(Box::pin(sent), timeout).await {
        Either::Right(_) => Outcome::Retry(format!("no answer within {} ms", r.timeout_ms)),
        Either::Left((Err(e), _)) => Outcome::Retry(format!("could not reach the receiver: {e}")),
        Either::Left((Ok((status, text)), _)) => outcome_of(status, &text),
    }
}
