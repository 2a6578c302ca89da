//! Path parameters of the admin and rating APIs, checked with an error that names
//! them.

use crate::error::ApiError;
use crate::keys;
use crate::period::parse_date;

pub(super) fn customer_id(id: &str) -> Result<&str, ApiError> {
    if keys::valid_customer_id(id) {
        Ok(id)
    } else {
        let msg = "Customer ids are 1 to 64 characters of letters, digits, `-` and `.`.";
        Err(ApiError::bad_request("invalid_customer_id", msg).with_param("id"))
    }
}

/// An instant given as `now`, `YYYY-MM-DD` (its start, UTC) or Unix milliseconds.
pub(super) fn instant(text: &str) -> Result<i64, ApiError> {
    match text {
        "now" => Ok(super::clock::now_ms()),
        _ => period_start(text),
    }
}

/// A period given as `YYYY-MM-DD` (its first day, UTC) or Unix milliseconds.
pub(super) fn period_start(text: &str) -> Result<i64, ApiError> {
    parse_date(text)
        .or_else(|| text.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_period",
                format!("`{text}` is not a period start (YYYY-MM-DD or Unix ms)."),
            )
            .with_param("period")
        })
}
