//! Customer API keys: `em_test_<customer>_<secret>` or `em_live_<customer>_<secret>`.
//! The customer id in the key routes a request straight to that customer's counter,
//! which verifies the key's SHA-256 in constant time: authentication and admission
//! cost one Durable Object round trip together. Keys are never stored in clear.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether a key is for the built-in sandbox provider or the real upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    pub fn prefix(self) -> &'static str {
        match self {
            Mode::Test => "em_test_",
            Mode::Live => "em_live_",
        }
    }
}

/// A key split into its parts; nothing about it is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub mode: Mode,
    pub customer: &'a str,
}

const SECRET_LEN: usize = 32;

/// Customer ids: 1 to 64 of `A-Z a-z 0-9 - .`, so they are safe in keys, URLs and logs.
pub fn valid_customer_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits a key; `None` when it cannot be an edgemeter key.
pub fn parse(key: &str) -> Option<ParsedKey<'_>> {
    let (mode, rest) = if let Some(r) = key.strip_prefix(Mode::Test.prefix()) {
        (Mode::Test, r)
    } else {
        (Mode::Live, key.strip_prefix(Mode::Live.prefix())?)
    };
    let (customer, secret) = rest.rsplit_once('_')?;
    let secret_ok = secret.len() == SECRET_LEN && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (secret_ok && valid_customer_id(customer)).then_some(ParsedKey { mode, customer })
}

/// Hex SHA-256 of a key: what is stored and compared.
pub fn hash(key: &str) -> String {
    digest(key.as_bytes())
}

/// Hex SHA-256 of any bytes (request bodies for idempotency checks).
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Constant-time comparison of two hashes.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A new key from 16 random bytes supplied by the caller.
pub fn generate(mode: Mode, customer: &str, random: [u8; 16]) -> String {
    format!("{}{customer}_{}", mode.prefix(), hex(&random))
}

/// A short public id for a key (to list and revoke it), derived from its hash.
pub fn key_id(hash: &str) -> String {
    format!("key_{}", &hash[..12])
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let key = generate(Mode::Live, "acme-1", [0xab; 16]);
        assert_eq!(key, format!("em_live_acme-1_{}", "ab".repeat(16)));
        assert_eq!(
            parse(&key),
            Some(ParsedKey {
                mode: Mode::Live,
                customer: "acme-1"
            })
        );
        let test = generate(Mode::Test, "demo", [7; 16]);
        assert_eq!(parse(&test).unwrap().mode, Mode::Test);
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = "0".repeat(32);
        for bad in [
            "".to_string(),
            "sk-abc".to_string(),
            format!("em_live__{secret}"),
            format!("em_live_acme_{}", "0".repeat(31)),
            format!("em_live_acme_{}", "z".repeat(32)),
            format!("em_prod_acme_{secret}"),
            format!("em_live_a/b_{secret}"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_compare_exactly() {
        let h = hash("em_live_x_00");
        assert_eq!(h.len(), 64);
        assert!(same_hash(&h, &hash("em_live_x_00")));
        assert!(!same_hash(&h, &hash("em_live_x_01")));
        assert!(!same_hash(&h, "short"));
        assert_eq!(key_id(&h).len(), 16);
    }
}
