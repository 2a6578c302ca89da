//! Reading SQLite rows as raw values. `to_array` would compile a second deserializer
//! (serde-wasm-bindgen) for every row type into the bundle; these few helpers do not.

use super::metrics::{bump_by, Metric};
use std::cell::Cell;
use wasm_bindgen::prelude::*;
use worker::{js_sys, Result, SqlCursor, SqlStorage, SqlStorageValue, State};

// workers-rs has no binding for `transactionSync`, and its closure would have to be
// 'static; statements that each bind one value run in it from here instead.
#[wasm_bindgen(inline_js = r#"
export function in_transaction(state, statements) {
  const storage = state.storage;
  let written = 0;
  storage.transactionSync(() => {
    for (const [query, bind] of statements) written += storage.sql.exec(query, bind).rowsWritten;
  });
  return written;
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn in_transaction(
        state: &JsValue,
        statements: js_sys::Array,
    ) -> std::result::Result<f64, JsValue>;
}

/// Runs `statements` (a query and its one parameter each) in one transaction: all of
/// them are written, or none when one fails.
pub fn transaction(state: &State, statements: &[(&str, String)]) -> Result<()> {
    let list = js_sys::Array::new();
    for (query, bind) in statements {
        let pair = js_sys::Array::of2(&JsValue::from_str(query), &JsValue::from_str(bind));
        list.push(&pair);
    }
    let written = in_transaction(state.as_raw(), list).map_err(worker::Error::from)?;
    bump_by(Metric::RowsWritten, written as u64);
    Ok(())
}

pub type Row = Vec<SqlStorageValue>;

/// Runs a statement. The rows it wrote (known once it ran) are counted per isolate:
/// the bench prices them.
pub fn exec(sql: &SqlStorage, query: &str, binds: Vec<SqlStorageValue>) -> Result<SqlCursor> {
    let cursor = sql.exec(query, binds)?;
    bump_by(Metric::RowsWritten, cursor.rows_written() as u64);
    Ok(cursor)
}

/// Every row of a query, counting the rows it read and wrote.
pub fn rows(sql: &SqlStorage, query: &str, binds: Vec<SqlStorageValue>) -> Result<Vec<Row>> {
    let cursor = sql.exec(query, binds)?;
    let rows = cursor.raw().collect::<Result<Vec<Row>>>()?;
    bump_by(Metric::RowsRead, cursor.rows_read() as u64);
    bump_by(Metric::RowsWritten, cursor.rows_written() as u64);
    Ok(rows)
}

/// The rows of `query`, which selects one `json_group_array(json_array(...))`: SQLite
/// builds them as one JSON text, so one value crosses into the wasm however many rows
/// there are (reading rows value by value costs a crossing per value).
pub fn json_rows<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    binds: Vec<SqlStorageValue>,
) -> Result<Vec<T>> {
    let rows = rows(sql, query, binds)?;
    let text = rows.first().map(|r| text(r, 0)).unwrap_or_default();
    match text.as_str() {
        "" => Ok(Vec::new()),
        text => serde_json::from_str(text).map_err(|e| worker::Error::RustError(e.to_string())),
    }
}

/// Column `i` as text; empty when it is not text.
pub fn text(row: &[SqlStorageValue], i: usize) -> String {
    match row.get(i) {
        Some(SqlStorageValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Column `i` as an integer; `None` when it is NULL or not a number.
pub fn integer(row: &[SqlStorageValue], i: usize) -> Option<i64> {
    match row.get(i) {
        Some(SqlStorageValue::Integer(n)) => Some(*n),
        Some(SqlStorageValue::Float(f)) => Some(*f as i64),
        _ => None,
    }
}

/// Creates the tables on first use. Done lazily, not in the Durable Object's
/// constructor, so a storage failure (a full disk, SQLite out of memory) becomes a 503
/// for that request instead of a panic that would reset every object of the isolate.
pub fn ensure_schema(sql: &SqlStorage, schema: &str, ready: &Cell<bool>) -> Result<()> {
    if !ready.get() {
        sql.exec(schema, None)?;
        ready.set(true);
    }
    Ok(())
}
