//! Price-book bounds (`up_to`, `included_units`, `package_size`, `free_units`) are
//! exact decimals, so a 0.1-unit tier can be written. They are read from a whole JSON
//! number (as they always were) or a decimal string (`"0.1"`: a JSON fraction is a
//! binary float, not the decimal written), with at most [`MAX_SCALE`] decimal places,
//! and written back as a number when whole and as a string otherwise, as prices are.
//! Meters stay whole numbers.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};
use std::str::FromStr;

/// Decimal places a bound may have: enough for any fraction of a unit a price book
/// needs, and few enough that no charge can leave `Decimal`'s range.
pub const MAX_SCALE: u32 = 6;

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Whole(u64),
    Number(f64),
    Text(String),
}

fn parse<E: serde::de::Error>(raw: Raw) -> Result<Decimal, E> {
    let d = match raw {
        Raw::Whole(n) => Decimal::from(n),
        Raw::Number(f) => {
            return Err(E::custom(format!(
                "{f}: write a fractional or negative bound as a decimal string, such as \"0.1\""
            )))
        }
        Raw::Text(t) => Decimal::from_str(t.trim())
            .map_err(|_| E::custom(format!("`{t}` is not a decimal number")))?
            .normalize(),
    };
    if d.is_sign_negative() && !d.is_zero() {
        return Err(E::custom(format!("{d} is negative")));
    }
    if d.scale() > MAX_SCALE {
        return Err(E::custom(format!(
            "{d} has more than {MAX_SCALE} decimal places"
        )));
    }
    Ok(d)
}

pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    match (d.fract().is_zero(), u64::try_from(*d)) {
        (true, Ok(n)) => s.serialize_u64(n),
        _ => s.serialize_str(&d.normalize().to_string()),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    parse(Raw::deserialize(d)?)
}

/// The same for an optional bound (`up_to: null` is the open last tier).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Option::<Raw>::deserialize(d)?.map(parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct B {
        #[serde(with = "super")]
        b: rust_decimal::Decimal,
        #[serde(with = "super::option", default)]
        o: Option<rust_decimal::Decimal>,
    }

    fn read(json: &str) -> Result<B, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_and_strings_read_exactly_and_whole_bounds_write_as_numbers() {
        let b = read(r#"{"b": "0.1", "o": "2.50"}"#).unwrap();
        assert_eq!(b.b.to_string(), "0.1");
        assert_eq!(b.o.unwrap().to_string(), "2.5");
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"b":"0.1","o":"2.5"}"#
        );
        let whole = read(r#"{"b": 100000000, "o": null}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#"{"b":100000000,"o":null}"#
        );
        assert_eq!(read(r#"{"b": "1e3"}"#).unwrap().b.to_string(), "1000");
    }

    #[test]
    fn negative_or_unreadable_bounds_are_refused() {
        for bad in [
            r#"{"b": -1}"#,
            r#"{"b": "-0.5"}"#,
            r#"{"b": "ten"}"#,
            r#"{"b": true}"#,
            // a JSON fraction is a binary float: 0.1234567890123456789 would not survive
            r#"{"b": 0.1}"#,
            r#"{"b": "0.0000001"}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
