//! The fake rating receiver as a standalone server, for `scripts/bench`:
//! `fake_receiver PORT SECRET` verifies signatures, dedupes records by id, answers 2xx,
//! and prints its counts on `GET /stats`.

#[allow(dead_code)]
#[path = "wire.rs"]
mod wire;

use edgemeter::flush::verify;
use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use wire::read_request;

#[derive(Default)]
struct Counts {
    batches: u64,
    records: u64,
    duplicates: u64,
    bad_signatures: u64,
    /// Requests metered by the records with new ids: what the receiver would bill.
    requests: u64,
    ids: HashSet<String>,
}

fn serve(conn: TcpStream, secret: &str, counts: &Mutex<Counts>) -> Option<()> {
    let _ = conn.set_nodelay(true);
    let mut out = conn.try_clone().ok()?;
    let mut reader = BufReader::new(conn);
    loop {
        let req = read_request(&mut reader)?;
        let signature = req.header("x-edgemeter-signature").unwrap_or_default();
        let body = req.body;
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        let (status, answer) = {
            let mut c = counts.lock().ok()?;
            if req.method == "GET" && req.path == "/stats" {
                let stats = format!(
                    r#"{{"batches":{},"records":{},"duplicates":{},"bad_signatures":{},"requests":{}}}"#,
                    c.batches, c.records, c.duplicates, c.bad_signatures, c.requests
                );
                (200, stats)
            } else if !verify(secret, &signature, &body, now_s, 300) {
                c.bad_signatures += 1;
                (401, r#"{"error":"bad signature"}"#.to_string())
            } else {
                let batch: serde_json::Value = serde_json::from_slice(&body).ok()?;
                c.batches += 1;
                for r in batch["records"].as_array()? {
                    if c.ids.insert(r["id"].as_str()?.to_string()) {
                        c.records += 1;
                        c.requests += r["requests"].as_u64().unwrap_or(0);
                    } else {
                        c.duplicates += 1;
                    }
                }
                (200, r#"{"ok":true}"#.to_string())
            }
        };
        write!(out, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}", answer.len()).ok()?;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let secret = args.next().unwrap_or_else(|| "whsec_bench".into());
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    println!("{}", listener.local_addr().unwrap().port());
    let counts = Arc::new(Mutex::new(Counts::default()));
    for conn in listener.incoming().flatten() {
        let (secret, counts) = (secret.clone(), counts.clone());
        std::thread::spawn(move || serve(conn, &secret, &counts));
    }
}
