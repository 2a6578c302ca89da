//! Stored provider resources through the proxy: file uploads, the customer's own file
//! list, and operations on one file or stored response, forwarded only for its owner.
//! Each is counted as one request; none carries tokens, so a stored response read back
//! is never metered again.

use super::proxy::Caller;
use super::ticket::{not_admitted, respond, Payload, Ticket};
use super::upstream::{self, collect, Outgoing, Upstreamed};
use super::{client, config, http};
use crate::error::ApiError;
use crate::keys::Mode;
use crate::protocol::{AdmitRequest, AdmitResponse, ListOwned, OwnedChange};
use crate::request::Prepared;
use crate::surface::owned::{ListQuery, OwnedResource};
use crate::surface::{multipart, Handling, ResourceKind, Routed};
use crate::usage::{Metered, Usage};
use worker::{Context, Env, Method, Request, Response};

/// The largest provider answer kept when it is buffered (a file object, a deletion).
const ANSWER_LIMIT: usize = 1 << 20;

pub async fn handle(
    mut req: Request,
    env: &Env,
    ctx: &Context,
    caller: Caller,
    routed: Routed,
) -> Result<Response, ApiError> {
    if caller.mode == Mode::Test {
        let msg = "Stored files and responses are not available with test keys.";
        return Err(ApiError::not_found(msg).with_code("unknown_route"));
    }
    match routed.handling.clone() {
        Handling::ListFiles => {
            let list = ListOwned {
                key_hash: caller.key_hash,
                query: ListQuery::parse(&routed.query)?,
            };
            client::call(
                env,
                &caller.counter,
                Method::Post,
                "/owned/list",
                Some(&list),
            )
            .await
        }
        Handling::UploadFile => {
            let body = http::read_capped(&mut req, config::max_body_bytes(env)).await?;
            let content_type = req
                .headers()
                .get("content-type")
                .ok()
                .flatten()
                .unwrap_or_default();
            let purposes = &config::catalog(env)?.proxy.file_purposes;
            multipart::check(&content_type, &body, purposes)?;
            let ticket = admit(env, &caller, Vec::new()).await?;
            let ticket = match ticket {
                Ok(t) => t,
                Err(refused) => return Ok(refused),
            };
            let out = Outgoing {
                method: Method::Post,
                target: routed.upstream_target(),
                body: Some(&body),
                client_headers: vec![("content-type".into(), content_type)],
            };
            forward(env, ctx, ticket, out, Some(ResourceKind::File)).await
        }
        Handling::Owned { kind, id, deletes } => {
            let ticket = match admit(env, &caller, vec![(kind, id.clone())]).await? {
                Ok(t) => t,
                Err(refused) => return Ok(refused),
            };
            let out = Outgoing {
                method: req.method(),
                target: routed.upstream_target(),
                body: None,
                client_headers: req
                    .headers()
                    .entries()
                    .filter(|(k, _)| k == "accept")
                    .collect(),
            };
            let forget = deletes.then_some((kind, id));
            forward_owned(env, ctx, ticket, out, forget).await
        }
        _ => Err(ApiError::internal("not a stored-resource route")),
    }
}

/// Admits one plain request; the counter checks `owns` in the same call.
async fn admit(
    env: &Env,
    caller: &Caller,
    owns: Vec<(ResourceKind, String)>,
) -> Result<Result<Ticket, Response>, ApiError> {
    let admit = AdmitRequest {
        key_hash: caller.key_hash.clone(),
        ask: Prepared::plain().ask(),
        idempotency: None,
        owns,
        now_ms: worker::Date::now().as_millis() as i64,
    };
    match client::admit(env, &caller.counter, &admit).await? {
        AdmitResponse::Admitted { reservation, .. } => Ok(Ok(Ticket {
            env: env.clone(),
            counter: caller.counter.clone(),
            reservation,
            keep: false,
            stored_response: None,
        })),
        other => Ok(Err(not_admitted(other)?)),
    }
}

fn one_request() -> Option<Metered> {
    Some(Metered {
        usage: Usage::default(),
        estimated: false,
    })
}

/// Sends to the provider; a refusal releases the reservation and is rewritten.
async fn send(
    env: &Env,
    ticket: Ticket,
    out: Outgoing<'_>,
) -> Result<(Upstreamed, Ticket), ApiError> {
    let catalog = config::catalog(env)?;
    let failure = match upstream::send(env, &catalog, out).await {
        Ok(Some(up)) if up.status < 400 => return Ok((up, ticket)),
        Ok(Some(up)) => upstream::refused(up).await,
        Ok(None) => ApiError::not_found("No provider is configured for stored resources.")
            .with_code("unknown_route"),
        Err(e) => e,
    };
    ticket.close(None, None).await;
    Err(failure)
}

/// Sends a request whose answer is a small JSON object, recording what it creates.
async fn forward(
    env: &Env,
    ctx: &Context,
    ticket: Ticket,
    out: Outgoing<'_>,
    creates: Option<ResourceKind>,
) -> Result<Response, ApiError> {
    let (up, ticket) = send(env, ticket, out).await?;
    let (status, headers) = (up.status, up.headers.clone());
    let bytes = collect(up.body, ANSWER_LIMIT).await;
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            ctx.wait_until(async move { ticket.close(one_request(), None).await });
            return Err(e);
        }
    };
    if let Some(kind) = creates {
        let now_ms = worker::Date::now().as_millis() as i64;
        if let Some(r) = OwnedResource::created(kind, &bytes, now_ms) {
            let change = OwnedChange::Add(r);
            let recorded =
                client::call(env, &ticket.counter, Method::Post, "/owned", Some(&change)).await;
            if !recorded.is_ok_and(|r| r.status_code() < 300) {
                worker::console_error!("an uploaded file could not be recorded for its owner");
            }
        }
    }
    ctx.wait_until(async move { ticket.close(one_request(), None).await });
    respond(status, &headers, Payload::Bytes(bytes))
}

/// Forwards an operation on an owned resource, streaming its answer (file content can
/// be large), and forgets the resource once the provider confirms a deletion.
async fn forward_owned(
    env: &Env,
    ctx: &Context,
    ticket: Ticket,
    out: Outgoing<'_>,
    forget: Option<(ResourceKind, String)>,
) -> Result<Response, ApiError> {
    let (up, ticket) = send(env, ticket, out).await?;
    let Some((kind, id)) = forget else {
        ctx.wait_until(async move { ticket.close(one_request(), None).await });
        return respond(up.status, &up.headers, Payload::Stream(up.body));
    };
    // A deletion's answer is small: the record goes only when the provider says the
    // resource is gone, so a refused deletion leaves it manageable by its owner.
    let (status, headers) = (up.status, up.headers.clone());
    let counter = ticket.counter.clone();
    let bytes = collect(up.body, ANSWER_LIMIT).await;
    ctx.wait_until(async move { ticket.close(one_request(), None).await });
    let bytes = bytes?;
    let deleted = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v["deleted"] == serde_json::Value::Bool(true));
    if deleted {
        let change = OwnedChange::Remove(kind, id);
        let _ = client::call(env, &counter, Method::Post, "/owned", Some(&change)).await;
    }
    respond(status, &headers, Payload::Bytes(bytes))
}
