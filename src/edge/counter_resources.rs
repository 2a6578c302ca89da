//! The customer's stored provider resources on its counter: which file and response
//! ids were created through its keys. The rules (what a record holds, how a list pages)
//! live in `surface::owned`; this file stores and answers.

use super::counter::{stored, UsageCounter};
use super::counter_store::{json, parse, Store};
use super::http;
use super::sql::{rows, text};
use crate::error::ApiError;
use crate::protocol::{ListOwned, OwnedChange};
use crate::surface::owned::{page, OwnedResource};
use crate::surface::ResourceKind;
use worker::{Response, Result};

fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::File => "file",
        ResourceKind::Response => "response",
    }
}

impl Store {
    pub fn owned(&self, kind: ResourceKind, id: &str) -> Result<Option<OwnedResource>> {
        let q = "SELECT body FROM owned WHERE kind = ? AND id = ?";
        let found = rows(&self.sql, q, vec![kind_name(kind).into(), id.into()])?;
        found.first().map(|r| parse(&text(r, 0))).transpose()
    }

    pub fn save_owned(&self, r: &OwnedResource) -> Result<()> {
        let q = "INSERT INTO owned (kind, id, body) VALUES (?, ?, ?)
                 ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body";
        super::sql::exec(
            &self.sql,
            q,
            vec![kind_name(r.kind).into(), r.id.as_str().into(), json(r)],
        )?;
        Ok(())
    }

    fn forget_owned(&self, kind: ResourceKind, id: &str) -> Result<()> {
        let q = "DELETE FROM owned WHERE kind = ? AND id = ?";
        super::sql::exec(&self.sql, q, vec![kind_name(kind).into(), id.into()])?;
        Ok(())
    }

    fn all_owned(&self, kind: ResourceKind) -> Result<Vec<OwnedResource>> {
        let found = rows(
            &self.sql,
            "SELECT body FROM owned WHERE kind = ?",
            vec![kind_name(kind).into()],
        )?;
        found.iter().map(|r| parse(&text(r, 0))).collect()
    }
}

impl UsageCounter {
    /// 404, exactly as for an id that does not exist, unless this customer owns it.
    /// The customer's record of a resource a request names, or the provider's 404.
    pub(super) fn check_owned(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> std::result::Result<OwnedResource, ApiError> {
        self.store
            .owned(kind, id)
            .map_err(stored)?
            .ok_or_else(|| kind.not_found(id))
    }

    pub(super) fn change_owned(
        &self,
        change: OwnedChange,
    ) -> std::result::Result<Response, ApiError> {
        match change {
            OwnedChange::Add(r) => self.store.save_owned(&r),
            OwnedChange::Remove(kind, id) => self.store.forget_owned(kind, &id),
        }
        .map_err(stored)?;
        Ok(Response::empty().map_err(http::internal)?.with_status(204))
    }

    /// Records a stored response's final tokens, once its stream has settled.
    pub(super) fn note_response_tokens(
        &self,
        id: &str,
        input: u64,
        output: u64,
    ) -> std::result::Result<(), ApiError> {
        let Some(mut r) = self
            .store
            .owned(ResourceKind::Response, id)
            .map_err(stored)?
        else {
            return Ok(());
        };
        (r.input, r.output) = (input, output);
        self.store.save_owned(&r).map_err(stored)
    }

    pub(super) fn list_owned(
        &self,
        req: ListOwned,
        now: i64,
    ) -> std::result::Result<Response, ApiError> {
        self.with(now, |l| crate::admission::verify(&l.keys, &req.key_hash))?;
        let files = self.store.all_owned(ResourceKind::File).map_err(stored)?;
        http::json_response(&page(files, &req.query), 200).map_err(http::internal)
    }
}
