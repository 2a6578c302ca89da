//! Customer and key administration on the customer's counter: create the customer,
//! issue keys (shown once, stored as SHA-256), list and revoke them.

use super::counter::{stored, UsageCounter};
use super::{config, http};
use crate::admission::KeyRow;
use crate::error::ApiError;
use crate::keys;
use crate::protocol::{CreateCustomer, IssueKey, KeyInfo};
use worker::Response;

impl UsageCounter {
    pub(super) fn create(
        &self,
        c: CreateCustomer,
        livemode: bool,
        now: i64,
    ) -> std::result::Result<Response, ApiError> {
        let catalog = config::catalog(&self.env)?;
        let existing = self.store.customer().map_err(stored)?;
        let customer = crate::customer::create(c, &catalog, existing.as_ref(), livemode, now)?;
        self.store.save_customer(&customer).map_err(stored)?;
        *self.mem.borrow_mut() = None;
        http::json_response(&customer, 201).map_err(http::internal)
    }

    pub(super) fn issue_key(
        &self,
        k: IssueKey,
        now: i64,
    ) -> std::result::Result<Response, ApiError> {
        let mode = k.mode()?;
        let (customer, livemode) = self
            .with(now, |l| Ok((l.customer.id.clone(), l.customer.livemode)))
            .map_err(|_| ApiError::not_found("No such customer."))?;
        keys::check_issue(mode, livemode)?;
        let secret = config::key_secret(&self.env)?;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| ApiError::internal(e.to_string()))?;
        let key = keys::generate(mode, &customer, random, &secret);
        let hash = keys::hash(&key);
        let info = KeyInfo {
            id: keys::key_id(&hash),
            mode: mode.name().into(),
            created_ms: now,
            revoked_ms: None,
        };
        self.store.insert_key(&hash, &info).map_err(stored)?;
        *self.mem.borrow_mut() = None;
        let shown = serde_json::json!({"id": info.id, "key": key, "mode": info.mode, "created_ms": now,
            "note": "Store this key now: it is not shown again."});
        http::json_response(&shown, 201).map_err(http::internal)
    }

    pub(super) fn list_keys(&self) -> std::result::Result<Response, ApiError> {
        let keys: Vec<KeyInfo> = self
            .store
            .keys()
            .map_err(stored)?
            .iter()
            .map(info)
            .collect();
        http::json_response(&keys, 200).map_err(http::internal)
    }

    pub(super) fn revoke(&self, id: &str, now: i64) -> std::result::Result<Response, ApiError> {
        if !self.store.revoke_key(id, now).map_err(stored)? {
            return Err(ApiError::not_found(format!("No live key `{id}`.")));
        }
        *self.mem.borrow_mut() = None;
        http::json_response(&serde_json::json!({"id": id, "revoked": true}), 200)
            .map_err(http::internal)
    }
}

fn info(k: &KeyRow) -> KeyInfo {
    KeyInfo {
        id: k.id.clone(),
        mode: k.mode.clone(),
        created_ms: k.created_ms,
        revoked_ms: k.revoked_ms,
    }
}
