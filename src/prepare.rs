//! The proxy's read and prepare decisions, whole: the `Idempotency-Key` and what it
//! names, then the body reduced to the route's allowed fields with per-customer
//! identities, capped to the model's limits and measured for the reservation.

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::keys::{self, Mode};
use crate::request::{self, Meter, Prepared};
use crate::surface::{fields, references, ResourceKind};

/// `Idempotency-Key` values longer than this are refused.
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// Stored resources a request names, each of which the caller must own.
pub type Owns = Vec<(ResourceKind, String)>;

/// The client's `Idempotency-Key`, bounded; it is never forwarded upstream.
pub fn idempotency_key(header: Option<String>) -> Result<Option<String>, ApiError> {
    if header
        .as_ref()
        .is_some_and(|k| k.len() > IDEMPOTENCY_KEY_MAX)
    {
        let msg = format!("`Idempotency-Key` must be at most {IDEMPOTENCY_KEY_MAX} characters.");
        return Err(ApiError::bad_request("invalid_value", msg).with_param("Idempotency-Key"));
    }
    Ok(header)
}

/// What an `Idempotency-Key` names: the route and the exact body, so a retry with the
/// same key and another body is told apart.
pub fn idempotency_digest(target: &str, body: &[u8]) -> String {
    keys::digest(&[b"POST".as_slice(), target.as_bytes(), body].join(&b'\n'))
}

/// Who sends a request, as preparing its body needs it.
pub struct Sender<'a> {
    pub mode: Mode,
    pub customer: &'a str,
    /// The deployment's key secret, which per-customer identities are derived with.
    pub key_secret: &'a [u8],
    /// The customer's identity for an end user the body does not name
    /// (`keys::identity` of the empty string): made once per key, not per request.
    pub anonymous: &'a str,
}

/// What preparing a body gives: the request to admit, the stored resources it names,
/// and whether the provider will store its response for the caller.
pub struct Ready {
    pub prepared: Prepared,
    pub owns: Owns,
    pub stores: bool,
}

/// Prepares a metered request's body. Only live keys own stored resources (a test key's
/// requests never store one); chat completions honour the catalog's cap field; every
/// cap is clamped to the model's most; a model without a price is refused.
pub fn prepare(
    catalog: &Catalog,
    sender: &Sender,
    meter: Meter,
    body: &[u8],
) -> Result<Ready, ApiError> {
    let mut json = request::parse_object(body)?;
    let identity = |v: &str| match v {
        "" => sender.anonymous.to_string(),
        v => keys::identity(sender.key_secret, sender.mode, sender.customer, v),
    };
    let owns_stored = sender.mode == Mode::Live;
    let extra = catalog.proxy.extra_fields(meter);
    fields::sanitize(meter, &mut json, extra, owns_stored, &identity)?;
    let owns = references::check(meter, &json)?;
    let stores = meter == Meter::Responses && owns_stored && fields::stores_response(&json);
    if meter == Meter::ChatCompletions {
        request::honour_cap(&mut json, catalog.proxy.chat_cap())?;
    }
    let price = json
        .get("model")
        .and_then(|m| m.as_str())
        .and_then(|m| catalog.price(m));
    if let Some(max) = price.and_then(|p| p.max_output_tokens) {
        request::clamp_caps(&mut json, max)?;
    }
    let mut prepared = request::prepare_json(meter, json)?;
    let Some(price) = price else {
        return Err(ApiError::unknown_model(&prepared.model));
    };
    crate::bounds::apply(&mut prepared, price)?;
    Ok(Ready {
        prepared,
        owns,
        stores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(mode: Mode) -> Sender<'static> {
        let anonymous = keys::identity(b"secret", mode, "acme", "");
        Sender {
            mode,
            customer: "acme",
            key_secret: b"secret",
            anonymous: Box::leak(anonymous.into_boxed_str()),
        }
    }

    #[test]
    fn an_unnamed_end_user_gets_the_customer_s_identity_and_a_named_one_its_own() {
        let catalog = crate::fixtures::catalog();
        let s = sender(Mode::Live);
        let body = br#"{"model": "gpt-4o-mini", "messages": [], "user": "bob"}"#;
        let ready = prepare(&catalog, &s, Meter::ChatCompletions, body).unwrap();
        let sent: serde_json::Value =
            serde_json::from_slice(ready.prepared.upstream_body.as_deref().unwrap()).unwrap();
        assert_eq!(sent["safety_identifier"], s.anonymous);
        assert_eq!(sent["prompt_cache_key"], s.anonymous);
        let bob = keys::identity(b"secret", Mode::Live, "acme", "bob");
        assert_eq!(sent["user"], bob.as_str());
        assert_ne!(bob, s.anonymous);
    }

    #[test]
    fn a_key_is_bounded_and_names_the_route_and_the_body() {
        assert_eq!(idempotency_key(None).unwrap(), None);
        let long = "k".repeat(IDEMPOTENCY_KEY_MAX);
        assert!(idempotency_key(Some(long.clone())).is_ok());
        let e = idempotency_key(Some(long + "k")).unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("Idempotency-Key"))
        );
        let a = idempotency_digest("/v1/responses", b"{}");
        assert_eq!(a, idempotency_digest("/v1/responses", b"{}"));
        assert_ne!(a, idempotency_digest("/v1/chat/completions", b"{}"));
        assert_ne!(a, idempotency_digest("/v1/responses", b"{ }"));
    }

    #[test]
    fn only_a_live_key_stores_a_response() {
        let catalog = crate::fixtures::catalog();
        let body = br#"{"model": "gpt-4o-mini", "input": "hi", "store": true}"#;
        let live = prepare(&catalog, &sender(Mode::Live), Meter::Responses, body).unwrap();
        assert!(live.stores);
        let test = prepare(&catalog, &sender(Mode::Test), Meter::Responses, body).unwrap();
        assert!(!test.stores, "a test key's response is never stored");
    }

    #[test]
    fn a_model_without_a_price_is_refused_and_caps_are_clamped_to_the_model() {
        let catalog = crate::fixtures::catalog();
        let unknown = br#"{"model": "gpt-9", "messages": []}"#;
        let e = prepare(
            &catalog,
            &sender(Mode::Live),
            Meter::ChatCompletions,
            unknown,
        );
        assert_eq!(
            e.err().and_then(|e| e.code).as_deref(),
            Some("model_not_found")
        );
        let model = catalog
            .models
            .iter()
            .find(|(_, p)| p.max_output_tokens.is_some())
            .map(|(name, p)| (name.clone(), p.max_output_tokens.unwrap()));
        let Some((name, max)) = model else {
            panic!("the test catalog has a model with a most");
        };
        let body = format!(
            r#"{{"model": "{name}", "messages": [], "max_tokens": {}}}"#,
            max * 10
        );
        let ready = prepare(
            &catalog,
            &sender(Mode::Live),
            Meter::ChatCompletions,
            body.as_bytes(),
        );
        let ready = ready.unwrap();
        assert!(ready
            .prepared
            .ask()
            .output_cap
            .is_some_and(|cap| cap <= max));
    }
}
