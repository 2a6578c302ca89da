//! Stored provider resources through the proxy: file uploads, the customer's own file
//! list, and operations on one file or stored response, forwarded only for its owner.
//! Each is counted as one request; none carries tokens, so a stored response read back
//! is never metered again.

use super::auth::Caller;
use super::http::NamedHeaders;
use super::metrics::{bump, Metric};
use super::ticket::{not_admitted, respond, Payload, Ticket};
use super::upstream::{self, OutBody, Outgoing, Upstreamed};
use super::{client, config, http};
use crate::error::ApiError;
use crate::limits::{declared_within, RESOURCE_ANSWER_BYTES};
use crate::protocol::{AdmitRequest, AdmitResponse, CounterCall, ListOwned, OwnedChange};
use crate::request::Prepared;
use crate::surface::headers::refused_by_provider;
use crate::surface::multipart::{not_kept_answer, upload_kept};
use crate::surface::owned::{deletion_confirmed, ListQuery, OwnedResource};
use crate::surface::{multipart, Handling, ResourceKind, Routed};
use crate::usage::Metered;
use futures_util::StreamExt;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::{AbortController, AbortSignal, Context, Env, Method, Request, Response};

/// A stored-resource or opted-in route; `headers` are those the proxy read for the
/// route (its forwardable ones among them).
pub async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    caller: Caller,
    headers: &NamedHeaders,
    routed: Routed,
) -> Result<Response, ApiError> {
    routed.handling.open_to(caller.mode)?;
    match routed.handling.clone() {
        Handling::ListFiles => {
            let list = ListOwned {
                key_hash: caller.key_hash,
                query: ListQuery::parse(&routed.query)?,
            };
            client::call(env, &caller.counter, &CounterCall::ListOwned(list)).await
        }
        Handling::UploadFile => {
            let limit = config::max_upload_bytes(env);
            if let Err(e) = declared_within(http::declared_length(&req), limit) {
                bump(Metric::BodyCapHits);
                return Err(e);
            }
            let content_type = req.headers().get("content-type").ok().flatten();
            let content_type = content_type.unwrap_or_default();
            let purposes = &config::catalog(env)?.proxy.file_purposes;
            let scanner = multipart::Scanner::new(&content_type, purposes)?;
            let ticket = match admit(env, &caller, Prepared::plain().ask(), Vec::new()).await? {
                Ok(t) => t,
                Err(refused) => return Ok(refused),
            };
            let refusal = UploadStop::default();
            let signal = refusal.signal();
            let body = checked_upload(&mut req, scanner, limit, refusal.clone())?;
            let out = Outgoing {
                method: Method::Post,
                target: routed.upstream_target(),
                body: OutBody::Stream(body),
                client_headers: vec![("content-type".into(), content_type)],
                signal: Some(signal),
            };
            upload(env, ctx, ticket, out, refusal).await
        }
        Handling::Owned { kind, id, deletes } => {
            let ticket = match admit(
                env,
                &caller,
                Prepared::plain().ask(),
                vec![(kind, id.clone())],
            )
            .await?
            {
                Ok(t) => t,
                Err(refused) => return Ok(refused),
            };
            let out = Outgoing {
                method: req.method(),
                target: routed.upstream_target(),
                body: OutBody::Empty,
                client_headers: headers
                    .get("accept")
                    .map_or(vec![], |v| vec![("accept".to_string(), v.to_string())]),
                signal: None,
            };
            let forget = deletes.then_some((kind, id));
            forward_counted(env, ctx, ticket, out, forget).await
        }
        Handling::Optional(name) => {
            let forwardable = headers.pairs().to_vec();
            optional(req, env, ctx, &caller, forwardable, routed, &name).await
        }
        _ => Err(ApiError::internal("not a stored-resource route")),
    }
}

/// A stateless route the operator opted in: its allowed fields pass, and it is
/// metered as one request under its name, at its fixed price (a spend cap holds).
async fn optional(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    caller: &Caller,
    forwardable: Vec<(String, String)>,
    routed: Routed,
    name: &str,
) -> Result<Response, ApiError> {
    let catalog = config::catalog(env)?;
    let route = catalog.proxy.routes.get(name);
    let route = route.ok_or_else(|| ApiError::internal("an opted-in route has no settings"))?;
    let body = http::read_capped(&mut req, config::max_body_bytes(env)).await?;
    let mut json = crate::request::parse_object(&body)?;
    let secret = config::key_secret(env)?;
    let identity = |v: &str| crate::keys::identity(&secret, caller.mode, &caller.customer, v);
    crate::surface::fields::sanitize_optional(&mut json, &route.fields, &identity)?;
    let sent = serde_json::to_vec(&json).map_err(ApiError::unexpected)?;
    let ask = Prepared {
        model: name.to_string(),
        ..Prepared::plain()
    }
    .ask();
    let ticket = match admit(env, caller, ask, Vec::new()).await? {
        Ok(t) => t,
        Err(refused) => return Ok(refused),
    };
    let out = Outgoing {
        method: Method::Post,
        target: routed.upstream_target(),
        body: OutBody::Bytes(&sent),
        client_headers: forwardable,
        signal: None,
    };
    forward_counted(env, ctx, ticket, out, None).await
}

/// Admits one request; the counter checks `owns` in the same call.
async fn admit(
    env: &Env,
    caller: &Caller,
    ask: crate::request::AdmitAsk,
    owns: Vec<(ResourceKind, String)>,
) -> Result<Result<Ticket, Response>, ApiError> {
    let admit = AdmitRequest {
        key_hash: caller.key_hash.clone(),
        ask,
        idempotency: None,
        owns,
        now_ms: super::clock::now_ms(),
    };
    match client::admit(env, &caller.counter, admit).await? {
        AdmitResponse::Admitted {
            reservation,
            reserved,
            ..
        } => Ok(Ok(Ticket {
            env: env.clone(),
            counter: caller.counter.clone(),
            reservation,
            keep: false,
            stored_response: None,
            reserved,
            leased: None,
        })),
        other => Ok(Err(not_admitted(other)?)),
    }
}

fn one_request() -> Option<Metered> {
    Some(Metered::one_request())
}

/// Sends to the provider; a refusal releases the reservation and is rewritten.
async fn send(
    env: &Env,
    ticket: Ticket,
    out: Outgoing<'_>,
) -> Result<(Upstreamed, Ticket), ApiError> {
    let catalog = config::catalog(env)?;
    let failure = match upstream::send(env, &catalog, out).await {
        Ok(Some(up)) if !refused_by_provider(up.status) => return Ok((up, ticket)),
        Ok(Some(up)) => upstream::refused(up).await,
        Ok(None) => ApiError::not_found("No provider is configured for stored resources.")
            .with_code("unknown_route"),
        Err(e) => e,
    };
    ticket.close(None, None).await;
    Err(failure)
}

/// Why a streamed upload was stopped, set by the stream the provider reads from, and
/// the abort that tears the provider's request down before its body can end.
#[derive(Clone, Default)]
struct UploadStop {
    reason: Rc<RefCell<Option<ApiError>>>,
    abort: Rc<RefCell<Option<AbortController>>>,
    /// What the check read, once the whole upload passed it.
    checked: Rc<RefCell<Option<multipart::Upload>>>,
}

impl UploadStop {
    fn signal(&self) -> AbortSignal {
        let controller = AbortController::default();
        let signal = controller.signal();
        *self.abort.borrow_mut() = Some(controller);
        signal
    }

    fn refuse(&self, reason: ApiError) {
        *self.reason.borrow_mut() = Some(reason);
        let controller = self.abort.borrow_mut().take();
        if let Some(c) = controller {
            c.abort();
        }
    }
}

/// The client's upload as a stream for the provider, checked as its bytes pass: the
/// size cap and the multipart rules. A refusal ends the stream with an error, so the
/// provider never receives a whole upload, and leaves its reason in `refusal`.
fn checked_upload(
    req: &mut Request,
    scanner: multipart::Scanner,
    limit: usize,
    refusal: UploadStop,
) -> Result<JsValue, ApiError> {
    let body = req
        .stream()
        .map_err(|e| ApiError::bad_request("unreadable_body", e.to_string()))?;
    let passed = refusal.checked.clone();
    let stop = move |e: ApiError| {
        refusal.refuse(e);
        Some((Err(worker::Error::RustError("upload refused".into())), None))
    };
    let stream = futures_util::stream::unfold(Some((body, scanner, 0usize)), move |state| {
        let (stop, passed) = (stop.clone(), passed.clone());
        async move {
            let (mut body, mut scanner, seen) = state?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len();
                    if seen > limit {
                        bump(Metric::BodyCapHits);
                        return stop(ApiError::too_large(limit));
                    }
                    if let Err(e) = scanner.push(&chunk) {
                        return stop(e);
                    }
                    Some((Ok(chunk), Some((body, scanner, seen))))
                }
                Some(Err(e)) => stop(ApiError::bad_request("unreadable_body", e.to_string())),
                None => match scanner.finish() {
                    Ok(upload) => {
                        *passed.borrow_mut() = Some(upload);
                        None
                    }
                    Err(e) => stop(e),
                },
            }
        }
    });
    let response = Response::from_stream(stream).map_err(http::internal)?;
    let web: worker::web_sys::Response = response.into();
    web.body()
        .map(JsValue::from)
        .ok_or_else(|| ApiError::internal("an upload stream has no body"))
}

/// Sends an upload, whose answer is a small file object, and records the file for its
/// owner; a file that cannot be recorded is deleted again and the upload refused.
async fn upload(
    env: &Env,
    ctx: &Context,
    ticket: Ticket,
    out: Outgoing<'_>,
    refusal: UploadStop,
) -> Result<Response, ApiError> {
    let files_path = out.target.clone();
    let sent = send(env, ticket, out).await;
    // The upload's own refusal (its size, a field, the purpose) stopped it midway:
    // that is the answer, whatever the provider made of a body cut short.
    let refused = refusal.reason.borrow_mut().take();
    if let Some(e) = refused {
        if let Ok((_, ticket)) = sent {
            ticket.close(None, None).await;
        }
        return Err(e);
    }
    let (up, ticket) = sent?;
    let (status, headers) = (up.status, up.headers.clone());
    let bytes = up.body.collect(RESOURCE_ANSWER_BYTES).await;
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            ticket.close_after(ctx, one_request(), None);
            return Err(e);
        }
    };
    let now_ms = super::clock::now_ms();
    let created = OwnedResource::created(ResourceKind::File, &bytes, now_ms);
    let id = created.as_ref().map(|r| r.id.clone());
    let checked = refusal.checked.borrow_mut().take();
    let kept = created.filter(|stored| upload_kept(stored, checked.as_ref()));
    let differs = id.is_some() && kept.is_none();
    let recorded = match kept {
        Some(r) => client::change_owned(env, &ticket.counter, &OwnedChange::Add(r)).await,
        None => false,
    };
    if !recorded {
        // A file its owner could never reach again, or one the provider stored other
        // than it was checked, is removed, not left in the shared account.
        if let (Some(id), Ok(catalog)) = (id, config::catalog(env)) {
            let out = Outgoing {
                method: Method::Delete,
                target: format!("{files_path}/{id}"),
                body: OutBody::Empty,
                client_headers: Vec::new(),
                signal: None,
            };
            let _ = upstream::send(env, &catalog, out).await;
        }
        ticket.close(None, None).await;
        return Err(not_kept_answer(differs));
    }
    ticket.close_after(ctx, one_request(), None);
    respond(status, &headers, Payload::Bytes(bytes))
}

/// Forwards a request counted as one, streaming its answer (file content and speech
/// can be large), and forgets a resource once the provider confirms its deletion.
async fn forward_counted(
    env: &Env,
    ctx: &Context,
    ticket: Ticket,
    out: Outgoing<'_>,
    forget: Option<(ResourceKind, String)>,
) -> Result<Response, ApiError> {
    let (up, ticket) = send(env, ticket, out).await?;
    let Some((kind, id)) = forget else {
        ticket.close_after(ctx, one_request(), None);
        let body = if up.content_type.starts_with("text/event-stream") {
            super::stream::scrubbed(up.body.into_stream())
        } else {
            up.body.into_stream()
        };
        return respond(up.status, &up.headers, Payload::Stream(body));
    };
    // A deletion's answer is small: the record goes only when the provider says the
    // resource is gone, so a refused deletion leaves it manageable by its owner.
    let (status, headers) = (up.status, up.headers.clone());
    let counter = ticket.counter.clone();
    let bytes = up.body.collect(RESOURCE_ANSWER_BYTES).await;
    ticket.close_after(ctx, one_request(), None);
    let bytes = bytes?;
    if deletion_confirmed(&bytes) {
        client::change_owned(env, &counter, &OwnedChange::Remove(kind, id)).await;
    }
    respond(status, &headers, Payload::Bytes(bytes))
}
