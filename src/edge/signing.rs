//! The rating endpoint's signature check with the runtime's WebCrypto: HMAC-SHA256 of
//! a whole batch is several times faster natively than in the wasm (`sha2`). The
//! header's parts and the constant-time comparison stay in the core
//! (`crate::flush::signature_parts`, `crate::flush::mac_matches`).

use crate::flush::{mac_matches, signature_parts};
use wasm_bindgen::prelude::*;
use worker::js_sys;
use worker::wasm_bindgen_futures::JsFuture;

// The imported key is kept per isolate: importing it costs about as much as a small
// MAC, and the secret rarely changes (a new one replaces it).
#[wasm_bindgen(inline_js = r#"
let kept = null;
export async function hmac_sha256_hex(secret, prefix, body) {
  if (kept === null || kept.secret !== secret) {
    const raw = new TextEncoder().encode(secret);
    const key = await crypto.subtle.importKey(
      "raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    kept = { secret, key };
  }
  const head = new TextEncoder().encode(prefix);
  const data = new Uint8Array(head.length + body.length);
  data.set(head, 0);
  data.set(body, head.length);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", kept.key, data));
  let hex = "";
  for (const b of mac) hex += b.toString(16).padStart(2, "0");
  return hex;
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn hmac_sha256_hex(
        secret: &str,
        prefix: &str,
        body: &[u8],
    ) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// Whether `header` (`t=<unix>,v1=<hex>`) signs `body` with `secret`, within
/// `tolerance_s` of `now_s`; false when WebCrypto fails.
pub async fn verified(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> bool {
    let Some((t, v1)) = signature_parts(header, now_s, tolerance_s) else {
        return false;
    };
    let Ok(promise) = hmac_sha256_hex(secret, &format!("{t}."), body) else {
        return false;
    };
    match JsFuture::from(promise).await.map(|v| v.as_string()) {
        Ok(Some(expected)) => mac_matches(&expected, v1),
        _ => false,
    }
}
