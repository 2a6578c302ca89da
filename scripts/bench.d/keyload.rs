//! A load generator for scripts/bench that spreads requests over many API keys, which
//! oha cannot (one header for every request): `keyload URL KEYS_FILE CONNS SECONDS`.
//! Each connection is a thread with a kept-alive HTTP/1.1 connection to 127.0.0.1;
//! request i uses key i mod n (a file of one key per line; an empty file sends none).
//! Prints one JSON line: requests, failed, seconds, rps, p50_us, p99_us.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// max_tokens as in scripts/bench's CHAT_BODY: every target gets the same answer.
const BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}"#;

/// Reads one response; its status, or None when the connection broke.
fn response(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    if !chunked {
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        return Some(status);
    }
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim(), 16).ok()?;
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(status);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, keys, conns, seconds] = &args[..] else {
        eprintln!("usage: keyload URL KEYS_FILE CONNS SECONDS");
        std::process::exit(2);
    };
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let keys: Vec<String> = std::fs::read_to_string(keys)
        .expect("keys file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let (conns, seconds): (usize, f64) = (conns.parse().unwrap(), seconds.parse().unwrap());
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let results: Vec<(Vec<u32>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns).map(|_| s.spawn(|| {
            let (mut lat, mut failed) = (Vec::new(), 0);
            let connect = || {
                let c = TcpStream::connect(host).expect("connect");
                c.set_nodelay(true).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                (c.try_clone().unwrap(), BufReader::new(c))
            };
            let (mut w, mut r) = connect();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let auth = match keys.is_empty() {
                    true => String::new(),
                    false => format!("authorization: Bearer {}\r\n", keys[i % keys.len()]),
                };
                let req = format!("POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{BODY}", BODY.len());
                let t = Instant::now();
                let ok = w.write_all(req.as_bytes()).is_ok() && response(&mut r) == Some(200);
                lat.push(t.elapsed().as_micros() as u32);
                if !ok {
                    failed += 1;
                    (w, r) = connect();
                }
            }
            (lat, failed)
        })).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let failed: usize = results.iter().map(|r| r.1).sum();
    let mut lat: Vec<u32> = results.into_iter().flat_map(|r| r.0).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        r#"{{"requests":{},"failed":{failed},"seconds":{secs:.3},"rps":{:.0},"p50_us":{},"p99_us":{}}}"#,
        lat.len(),
        lat.len() as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}
