//! The admin API, behind the `ADMIN_TOKEN` secret (compared in constant time):
//! customers, keys and usage. Each call is forwarded to the customer's counter.

use super::{client, config, http};
use crate::error::ApiError;
use crate::keys;
use crate::protocol::{CreateCustomer, IssueKey};
use subtle::ConstantTimeEq;
use worker::{Env, Method, Request, Response};

pub async fn handle(req: Request, env: &Env) -> worker::Result<Response> {
    http::respond(admin(req, env).await)
}

fn authorize(req: &Request, env: &Env) -> Result<(), ApiError> {
    let Some(token) = config::setting(env, "ADMIN_TOKEN") else {
        return Err(ApiError::forbidden(
            "The admin API is disabled: set the ADMIN_TOKEN secret.",
        ));
    };
    let given = http::api_key(req.headers()).unwrap_or_default();
    let same = given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()));
    if same {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Invalid admin token."))
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let body = if bytes.is_empty() {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(body).map_err(ApiError::invalid_json)
}

fn customer_id(id: &str) -> Result<&str, ApiError> {
    if keys::valid_customer_id(id) {
        Ok(id)
    } else {
        let msg = "Customer ids are 1 to 64 characters of letters, digits, `-` and `.`.";
        Err(ApiError::bad_request("invalid_customer_id", msg).with_param("id"))
    }
}

async fn admin(mut req: Request, env: &Env) -> Result<Response, ApiError> {
    authorize(&req, env)?;
    let path = req.path();
    let method = req.method();
    let bytes = req.bytes().await.unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches("/admin/v1/").split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Get, ["catalog"]) => {
            http::json_response(config::catalog(env)?.as_ref(), 200).map_err(http::internal)
        }
        (Method::Post, ["customers"]) => {
            let c: CreateCustomer = parse(&bytes)?;
            let id = customer_id(&c.id)?.to_string();
            client::call(env, &id, Method::Post, "/customer", Some(&c)).await
        }
        (Method::Get, ["customers", id, "usage"]) => {
            let none: Option<String> = None;
            client::call(env, customer_id(id)?, Method::Post, "/usage", Some(&none)).await
        }
        (Method::Get, ["customers", id, "keys"]) => {
            client::call::<()>(env, customer_id(id)?, Method::Get, "/keys", None).await
        }
        (Method::Post, ["customers", id, "keys"]) => {
            let k: IssueKey = parse(&bytes)?;
            client::call(env, customer_id(id)?, Method::Post, "/keys", Some(&k)).await
        }
        (Method::Delete, ["customers", id, "keys", key_id]) => {
            let key_id = key_id.to_string();
            client::call(
                env,
                customer_id(id)?,
                Method::Post,
                "/keys/revoke",
                Some(&key_id),
            )
            .await
        }
        _ => Err(ApiError::not_found(format!("No admin route {path}."))),
    }
}
