//! A tiny blocking HTTP/1.1 client over `TcpStream`: full control of the connection, so
//! a test can read part of a stream and then hang up like an impatient client.

use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The OpenAI error `type`, asserting the body has the error shape.
    pub fn error_type(&self) -> String {
        let v = self.json();
        let e = &v["error"];
        for field in ["message", "type", "code", "param"] {
            assert!(
                e.get(field).is_some(),
                "error body lacks `{field}`: {}",
                self.text()
            );
        }
        e["type"].as_str().unwrap_or_default().to_string()
    }

    /// The error's `code`, once the body is checked to be in OpenAI's error shape.
    pub fn error_code(&self) -> String {
        self.error_type();
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn open(port: u16, method: &str, path: &str, headers: &[(&str, &str)], framing: &str) -> TcpStream {
    try_open(port, method, path, headers, framing).expect("connect to worker")
}

fn try_open(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    framing: &str,
) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n{framing}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    Ok(s)
}

fn connect(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    try_connect(port, method, path, headers, body).expect("send request")
}

fn try_connect(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<TcpStream> {
    let framing = format!("content-length: {}", body.len());
    let mut s = try_open(port, method, path, headers, &framing)?;
    s.write_all(body)?;
    Ok(s)
}

/// Status, headers and where the body starts.
type Head = (u16, Vec<(String, String)>, usize);

fn split_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, end + 4))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// Whether `body` holds a complete message body (wrangler keeps connections open for
/// seconds after `connection: close`, so the end is found by framing, not by EOF).
fn complete(headers: &[(String, String)], body: &[u8]) -> bool {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        return body.starts_with(b"0\r\n\r\n") || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n");
    }
    false
}

/// Sends a request and reads the whole response.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    read_response(connect(port, method, path, headers, body), false)
}

/// [`request`], with a connection that fails or breaks off as an error, not a panic
/// (a server still starting up).
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    try_read_response(try_connect(port, method, path, headers, body)?, false)
}

/// Sends a body `transfer-encoding: chunked`, without Content-Length, one chunk per
/// piece, and reads the response. The server may answer and hang up before the last
/// piece: failed writes are ignored, and a reset after the response head ends it.
pub fn request_chunked(port: u16, path: &str, headers: &[(&str, &str)], pieces: &[&[u8]]) -> Resp {
    let mut s = open(port, "POST", path, headers, "transfer-encoding: chunked");
    for piece in pieces {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let r = read_response(s.try_clone().expect("clone stream"), true);
    // Wait for the server to close its side before hanging up: local workerd stalls its
    // next request when a client leaves while a refused body is still unread.
    let mut rest = [0u8; 4096];
    while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
    r
}

fn read_response(s: TcpStream, reset_ends: bool) -> Resp {
    try_read_response(s, reset_ends).unwrap_or_else(|e| panic!("read response: {e}"))
}

fn try_read_response(mut s: TcpStream, reset_ends: bool) -> io::Result<Resp> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let mut head = None;
    loop {
        if head.is_none() {
            head = split_head(&raw);
        }
        if let Some((_, h, start)) = &head {
            if complete(h, &raw[*start..]) {
                break;
            }
        }
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(_) if reset_ends && head.is_some() => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {raw:?}"));
    let (status, headers, start) = split_head(&raw).ok_or_else(bad)?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(&raw[start..])
    } else {
        raw[start..].to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends a request, reads until the raw response contains `until`, then hangs up.
/// Returns what was read.
pub fn read_then_hang_up(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    until: &str,
) -> String {
    let mut s = connect(port, "POST", path, headers, body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains(until) {
        let n = s.read(&mut buf).expect("read stream");
        assert!(
            n > 0,
            "stream ended before {until:?}: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    s.shutdown(std::net::Shutdown::Both).ok();
    String::from_utf8_lossy(&raw).into_owned()
}
