//! File uploads stream through to the provider, checked as their bytes pass: an upload
//! over `MAX_UPLOAD_BYTES` or with a refused field is stopped before it ends, so the
//! shared account never receives a whole file edgemeter refused, however the client
//! frames its body.

mod support;

use support::http::request_chunked;
use support::upstream::FakeUpstream;
use support::wrangler::{self, Worker};
use support::{catalog, customer, metrics, settled_usage, upload};

const BOUNDARY: &str = "edgemeter-upload-boundary";

/// A multipart upload as its parts' bytes, in the order given.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, data) in parts {
        let file = filename.map_or(String::new(), |f| format!("; filename=\"{f}\""));
        out.extend(
            format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .into_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
    out
}

#[test]
fn refused_uploads_never_reach_the_account_whole() {
    let upstream = FakeUpstream::start(0);
    let dir = wrangler::scratch("uploads");
    let vars = [("MAX_UPLOAD_BYTES", "100000")];
    let worker = Worker::start_with(&dir, &upstream.url(), &catalog(), &vars);
    let port = worker.port;
    let (_, key) = customer(port, "open");
    let auth = format!("Bearer {key}");
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", ct.as_str()),
    ];
    let stored = || {
        upstream
            .paths()
            .iter()
            .filter(|p| *p == "/v1/files")
            .count()
    };

    // a file over the cap, chunked so no Content-Length announces it
    let big = vec![b'z'; 150_000];
    let body = form(&[
        ("purpose", None, b"user_data"),
        ("file", Some("big.bin"), &big),
    ]);
    let pieces: Vec<&[u8]> = body.chunks(16 * 1024).collect();
    let m0 = metrics(port);
    let r = request_chunked(port, "/v1/files", &headers, &pieces);
    assert_eq!(r.status, 413, "{}", r.text());
    let m1 = metrics(port);
    let hits = |m: &serde_json::Value| m["body_cap_hits"].as_u64().unwrap();
    assert_eq!(hits(&m1) - hits(&m0), 1, "{m0} -> {m1}");

    // a purpose that comes after the file is still checked, and the file is refused
    let body = form(&[
        ("file", Some("a.txt"), b"content"),
        ("purpose", None, b"batch"),
    ]);
    let r = request_chunked(port, "/v1/files", &headers, &[&body[..40], &body[40..]]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["param"], "purpose");

    assert_eq!(
        stored(),
        0,
        "a refused upload reached the account: {:?}",
        upstream.paths()
    );
    let usage = settled_usage(port, &key);
    assert_eq!(support::meter(&usage, "requests", "")["requests"], 0);

    // a good upload still streams through whole, chunked or not
    let body = form(&[
        ("file", Some("ok.txt"), b"hello"),
        ("purpose", None, b"user_data"),
    ]);
    let r = request_chunked(port, "/v1/files", &headers, &[&body[..30], &body[30..]]);
    assert_eq!(
        (r.status, r.json()["bytes"].as_u64()),
        (200, Some(5)),
        "{}",
        r.text()
    );
    assert_eq!(
        upload(port, &key, "user_data", "b.txt", b"abc").json()["bytes"],
        3
    );
    assert_eq!(stored(), 2);
    worker.stop();
}
