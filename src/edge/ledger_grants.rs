//! The Ledger's credit grants: adding one, listing them with their balances (net of
//! every invoice so far, open drafts included), and voiding one, which keeps it with
//! what it paid and makes it unusable from that instant.

use super::config;
use super::http;
use super::ledger::CustomerLedger;
use crate::error::ApiError;
use crate::ledger::account;
use crate::ledger::books::{self, rating_error};
use crate::rating::{grant_balances, Account};
use serde_json::{json, Value};
use worker::Response;

type Answer = Result<Response, ApiError>;

impl CustomerLedger<'_> {
    /// The stored account document (`{"plan", "account", …}`); 404 before one is set.
    fn account_doc(&self) -> Result<Value, ApiError> {
        self.meta("account")?
            .ok_or_else(|| ApiError::not_found("Set the customer's account first."))
    }

    /// Validates the account with its changed grants against the book, stores it, and
    /// forgets the drafts (finals never change).
    fn store_grants(&self, mut doc: Value, grants: Vec<Value>) -> Result<Value, ApiError> {
        let book = config::price_book(&self.shard.env)?;
        doc["account"]["grants"] = Value::Array(grants);
        Account::parse(&doc["account"].to_string(), &book).map_err(rating_error)?;
        self.set_meta("account", &doc)?;
        self.forget_rated()?;
        Ok(doc)
    }

    /// A prepaid credit grant or top-up, validated against the book with the others.
    pub(super) fn add_grant(&self, grant: &Value) -> Answer {
        let doc = self.account_doc()?;
        let mut grants = grants_of(&doc);
        account::add_grant(&mut grants, grant)?;
        let doc = self.store_grants(doc, grants)?;
        http::json_response(&doc, 201).map_err(http::internal)
    }

    /// Every grant with what invoices drew on it and what is left now.
    pub(super) fn list_grants(&self, now_ms: i64) -> Answer {
        let book = config::price_book(&self.shard.env)?;
        let doc = self.account_doc()?;
        let account = Account::parse(&doc["account"].to_string(), &book).map_err(rating_error)?;
        let invoices = books::earlier_invoices(self, i64::MAX, now_ms)?;
        let balances = grant_balances(&account, &invoices, now_ms);
        http::json_response(&json!({"data": balances}), 200).map_err(http::internal)
    }

    /// Voids a grant from now on; it stays listed, with what it paid.
    pub(super) fn void_grant(&self, id: &str, now_ms: i64) -> Answer {
        let doc = self.account_doc()?;
        let mut grants = grants_of(&doc);
        let voided = account::void_grant(&mut grants, id, now_ms)?;
        self.store_grants(doc, grants)?;
        http::json_response(&voided, 200).map_err(http::internal)
    }
}

fn grants_of(doc: &Value) -> Vec<Value> {
    let grants = doc["account"]["grants"].as_array();
    grants.cloned().unwrap_or_default()
}
