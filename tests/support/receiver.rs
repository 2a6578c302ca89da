//! A fake rating endpoint on 127.0.0.1: checks each batch's signature, dedupes records
//! by id (as a real receiver must), and can be told to fail, to answer too late, or to
//! hold its answer until released (to kill the worker between send and acknowledgement).

use super::wire::{read_request, Incoming};
use edgemeter::flush::verify;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// 500 on every other request (after recording nothing).
    FailEveryOther,
    /// Records the batch, then answers after this many ms (past the worker's timeout).
    Slow(u64),
    /// Records the batch and does not answer until the mode changes.
    Hold,
}

#[derive(Default)]
pub struct State {
    pub secret: String,
    pub mode: Option<Mode>,
    pub requests: usize,
    pub bad_signatures: usize,
    pub duplicates: usize,
    /// Unique records by id.
    pub records: HashMap<String, Value>,
    /// When set, a batch without `Authorization: Bearer <this>` is refused with 401,
    /// as Lago and OpenMeter refuse it.
    pub required_auth: Option<String>,
    /// The path each batch was posted to.
    pub paths: Vec<String>,
    /// Lago's `external_subscription_id` of each event received.
    pub subscriptions: Vec<String>,
    /// Records of this customer are refused one by one, listed in the 2xx answer.
    pub refuse_customer: Option<String>,
}

pub struct Receiver {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

impl Receiver {
    pub fn start(secret: &str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            secret: secret.into(),
            mode: Some(Mode::Ok),
            ..State::default()
        }));
        let shared = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = shared.clone();
                thread::spawn(move || handle(conn, state));
            }
        });
        Receiver { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ingest", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub fn set_secret(&self, secret: &str) {
        self.state.lock().unwrap().secret = secret.into();
    }

    /// Deduplicated totals per (customer, meter, model): requests, input, output, cached.
    pub fn totals(&self) -> BTreeMap<(String, String, String), [u64; 4]> {
        let mut out = BTreeMap::new();
        for r in self.state.lock().unwrap().records.values() {
            let key = (
                r["customer"].as_str().unwrap().to_string(),
                r["meter"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
            );
            let t: &mut [u64; 4] = out.entry(key).or_default();
            for (i, f) in ["requests", "input_tokens", "output_tokens", "cached_tokens"]
                .iter()
                .enumerate()
            {
                t[i] += r[*f].as_u64().unwrap();
            }
        }
        out
    }

    pub fn records(&self) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .records
            .values()
            .cloned()
            .collect()
    }
}

fn answer(mut conn: TcpStream, status: u16, body: &str) {
    let _ = write!(conn, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
}

fn handle(conn: TcpStream, state: Arc<Mutex<State>>) {
    let Ok(clone) = conn.try_clone() else { return };
    let Some(Incoming {
        headers,
        body,
        path,
        ..
    }) = read_request(&mut BufReader::new(clone))
    else {
        return;
    };
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    let signature = headers
        .iter()
        .find(|(k, _)| k == "x-edgemeter-signature")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mode = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.paths.push(path);
        if let Some(token) = s.required_auth.clone() {
            if auth != Some(format!("Bearer {token}")) {
                drop(s);
                return answer(conn, 401, r#"{"error":"unauthorized"}"#);
            }
        }
        let mode = s.mode.unwrap_or(Mode::Ok);
        if mode == Mode::FailEveryOther && s.requests % 2 == 1 {
            drop(s);
            return answer(conn, 500, r#"{"error":"try again"}"#);
        }
        if !verify(&s.secret, &signature, &body, now_s, 300) {
            s.bad_signatures += 1;
            drop(s);
            return answer(conn, 401, r#"{"error":"bad signature"}"#);
        }
        let batch: Value = serde_json::from_slice(&body).unwrap();
        // Native records as they are; CloudEvents and Lago events read back as records.
        let records: Vec<Value> = match batch["records"].as_array() {
            Some(records) => records.clone(),
            None => {
                for e in batch["events"].as_array().into_iter().flatten() {
                    let sub = e["external_subscription_id"].as_str().unwrap_or("");
                    s.subscriptions.push(sub.to_string());
                }
                let records = edgemeter::flush::records_of(&batch).expect("an exported batch");
                records
                    .iter()
                    .map(|r| serde_json::to_value(r).unwrap())
                    .collect()
            }
        };
        let mut refused = Vec::new();
        for r in &records {
            let id = r["id"].as_str().unwrap().to_string();
            if s.refuse_customer.as_deref() == r["customer"].as_str() {
                refused.push(serde_json::json!({"id": id, "reason": "unknown customer"}));
                continue;
            }
            if s.records.insert(id, r.clone()).is_some() {
                s.duplicates += 1;
            }
        }
        if !refused.is_empty() {
            drop(s);
            let body = serde_json::json!({"ok": true, "refused": refused}).to_string();
            return answer(conn, 200, &body);
        }
        mode
    };
    match mode {
        Mode::Slow(ms) => thread::sleep(Duration::from_millis(ms)),
        Mode::Hold => {
            while state.lock().unwrap().mode == Some(Mode::Hold) {
                thread::sleep(Duration::from_millis(50));
            }
        }
        _ => {}
    }
    answer(conn, 200, r#"{"ok":true}"#);
}
