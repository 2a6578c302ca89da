//! Customer API keys: `em_test_<customer>_<secret>` or `em_live_<customer>_<secret>`.
//! The secret is 16 random bytes and a MAC of everything before it under the server's
//! `KEY_SECRET`, so the Worker refuses a forged key before it reads the body or touches
//! any Durable Object. The customer id then routes a request straight to that customer's
//! counter, which checks the key's SHA-256 (revocation) in constant time, in the same
//! call as admission. Keys are never stored in clear.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether a key is for the built-in sandbox provider or the real upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Test,
    Live,
}

impl Mode {
    /// The word the admin API and key listings use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

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

/// Hex characters of the random part and of the MAC.
const RANDOM_HEX: usize = 32;
const MAC_HEX: usize = 32;
const SECRET_LEN: usize = RANDOM_HEX + MAC_HEX;

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

/// The name of the counter Durable Object for a customer in one mode. Test and live
/// keys use separate counters: separate quotas, usage and idempotency namespaces, so a
/// test key can never replay a live response. `:` is not allowed in customer ids, so
/// the names cannot collide.
pub fn counter_name(mode: Mode, customer: &str) -> String {
    match mode {
        Mode::Live => customer.to_string(),
        Mode::Test => format!("test:{customer}"),
    }
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

/// The admin API's check: off (403) without an `ADMIN_TOKEN`, and the token compared
/// in constant time.
pub fn authorize_admin(
    configured: Option<&str>,
    given: &str,
) -> Result<(), crate::error::ApiError> {
    use crate::error::ApiError;
    let Some(token) = configured else {
        let msg = "The admin API is disabled: set the ADMIN_TOKEN secret.";
        return Err(ApiError::forbidden(msg));
    };
    match same_hash(given, token) {
        true => Ok(()),
        false => Err(ApiError::unauthorized("Invalid admin token.")),
    }
}

/// A key of `mode` is issued only by its own mode's counter: a live key never by a
/// test counter, nor the other way round.
pub fn check_issue(mode: Mode, counter_livemode: bool) -> Result<(), crate::error::ApiError> {
    match counter_livemode == (mode == Mode::Live) {
        true => Ok(()),
        false => Err(crate::error::ApiError::internal(
            "a key was sent to the other mode's counter",
        )),
    }
}

/// HMAC-SHA256 under `secret`.
pub fn mac(secret: &[u8], message: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(message);
    m.finalize().into_bytes().into()
}

/// A new key from 16 random bytes supplied by the caller, signed under `key_secret`.
pub fn generate(mode: Mode, customer: &str, random: [u8; 16], key_secret: &[u8]) -> String {
    let unsigned = format!("{}{customer}_{}", mode.prefix(), hex(&random));
    let tag = mac(key_secret, unsigned.as_bytes());
    format!("{unsigned}{}", hex(&tag[..MAC_HEX / 2]))
}

/// Whether a well-formed key was issued under `key_secret` (constant time).
pub fn signed(key: &str, key_secret: &[u8]) -> bool {
    if parse(key).is_none() {
        return false;
    }
    let (unsigned, given) = key.split_at(key.len() - MAC_HEX);
    let tag = mac(key_secret, unsigned.as_bytes());
    bool::from(hex(&tag[..MAC_HEX / 2]).as_bytes().ct_eq(given.as_bytes()))
}

/// A client-chosen identifier (`user`, `prompt_cache_key`) as the provider sees it:
/// stable for one customer and mode, different for every other, and not reversible
/// without `key_secret`.
pub fn identity(key_secret: &[u8], mode: Mode, customer: &str, value: &str) -> String {
    let message = format!("identity\n{}{customer}\n{value}", mode.prefix());
    format!("em_{}", hex(&mac(key_secret, message.as_bytes())[..16]))
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
        let key = generate(Mode::Live, "acme-1", [0xab; 16], b"s");
        assert!(key.starts_with(&format!("em_live_acme-1_{}", "ab".repeat(16))));
        assert!(signed(&key, b"s"));
        assert_eq!(
            parse(&key),
            Some(ParsedKey {
                mode: Mode::Live,
                customer: "acme-1"
            })
        );
        let test = generate(Mode::Test, "demo", [7; 16], b"s");
        assert_eq!(parse(&test).unwrap().mode, Mode::Test);
    }

    #[test]
    fn forged_and_altered_keys_fail_the_mac() {
        let key = generate(Mode::Live, "acme", [1; 16], b"server");
        assert!(signed(&key, b"server"));
        assert!(!signed(&key, b"other"));
        // the same secret moved to another customer or mode
        let secret = key.rsplit_once('_').unwrap().1;
        assert!(!signed(&format!("em_live_victim_{secret}"), b"server"));
        assert!(!signed(&format!("em_test_acme_{secret}"), b"server"));
        assert!(!signed(
            &format!("em_live_acme_{}", "0".repeat(64)),
            b"server"
        ));
        // the old unsigned shape
        assert!(!signed(
            &format!("em_live_acme_{}", "0".repeat(32)),
            b"server"
        ));
    }

    #[test]
    fn identities_are_per_customer_and_mode() {
        let a = identity(b"k", Mode::Live, "a", "alice");
        assert_eq!(a, identity(b"k", Mode::Live, "a", "alice"));
        assert_ne!(a, identity(b"k", Mode::Live, "b", "alice"));
        assert_ne!(a, identity(b"k", Mode::Test, "a", "alice"));
        assert!(!a.contains("alice"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let secret = "0".repeat(64);
        for bad in [
            "".to_string(),
            "sk-abc".to_string(),
            format!("em_live__{secret}"),
            format!("em_live_acme_{}", "0".repeat(63)),
            format!("em_live_acme_{}", "0".repeat(32)),
            format!("em_live_acme_{}", "z".repeat(64)),
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

    #[test]
    fn the_admin_api_is_off_without_a_token_and_checks_it_exactly() {
        assert_eq!(authorize_admin(None, "anything").unwrap_err().status, 403);
        assert!(authorize_admin(Some("s3cret"), "s3cret").is_ok());
        assert_eq!(
            authorize_admin(Some("s3cret"), "s3cre").unwrap_err().status,
            401
        );
        assert_eq!(authorize_admin(Some("s3cret"), "").unwrap_err().status, 401);
    }

    #[test]
    fn a_key_is_issued_only_by_its_own_modes_counter() {
        assert!(check_issue(Mode::Live, true).is_ok());
        assert!(check_issue(Mode::Test, false).is_ok());
        assert_eq!(check_issue(Mode::Live, false).unwrap_err().status, 500);
        assert_eq!(check_issue(Mode::Test, true).unwrap_err().status, 500);
    }
}
