//! Tests of the multipart upload check.
use super::*;

fn form(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
    let mut out = String::new();
    for (name, filename, data) in parts {
        out.push_str("--XyZ\r\ncontent-disposition: form-data; name=\"");
        out.push_str(name);
        out.push('"');
        if let Some(f) = filename {
            out.push_str(&format!("; filename=\"{f}\""));
        }
        out.push_str(&format!("\r\n\r\n{data}\r\n"));
    }
    out.push_str("--XyZ--\r\n");
    out.into_bytes()
}

const CT: &str = "multipart/form-data; boundary=XyZ";

#[test]
fn a_differently_read_upload_is_caught_by_what_was_stored() {
    use crate::surface::{owned::OwnedResource, ResourceKind};
    let up = Upload {
        purpose: "user_data".into(),
        filename: "a".into(),
        bytes: 5,
    };
    let stored = |purpose: &str, bytes: u64| {
        let answer = format!(r#"{{"id":"file-1","purpose":"{purpose}","bytes":{bytes}}}"#);
        OwnedResource::created(ResourceKind::File, answer.as_bytes(), 0).unwrap()
    };
    assert!(up.stored_as(&stored("user_data", 5)));
    assert!(!up.stored_as(&stored("batch", 5)));
    assert!(!up.stored_as(&stored("user_data", 6)));
}

#[test]
fn reads_purpose_name_and_size() {
    let body = form(&[
        ("purpose", None, "user_data"),
        ("file", Some("a.txt"), "hello"),
    ]);
    let purposes = vec!["user_data".to_string()];
    let up = check(CT, &body, &purposes).unwrap();
    assert_eq!(
        up,
        Upload {
            purpose: "user_data".into(),
            filename: "a.txt".into(),
            bytes: 5
        }
    );
}

#[test]
fn byte_by_byte_reads_the_same_and_refuses_as_soon_as_it_can() {
    let purposes = vec!["user_data".to_string()];
    // file content that looks like a boundary but lacks the line break before it
    let body = form(&[
        ("purpose", None, "user_data"),
        ("file", Some("a.txt"), "x--XyZ--y"),
    ]);
    let mut s = Scanner::new(CT, &purposes).unwrap();
    body.chunks(1).for_each(|b| s.push(b).unwrap());
    let up = s.finish().unwrap();
    assert_eq!((up.filename.as_str(), up.bytes), ("a.txt", 9));
    // a refused purpose is refused before the file has arrived
    let batch = form(&[("purpose", None, "batch"), ("file", Some("a"), "content")]);
    let cut = batch.windows(8).position(|w| w == b"name=\"fi").unwrap();
    let mut s = Scanner::new(CT, &purposes).unwrap();
    assert_eq!(
        s.push(&batch[..cut]).unwrap_err().param.as_deref(),
        Some("purpose")
    );
    // the file's size is counted, never kept
    let big = "z".repeat(100_000);
    let body = form(&[("file", Some("b"), &big), ("purpose", None, "user_data")]);
    let mut s = Scanner::new(CT, &purposes).unwrap();
    body.chunks(4096).for_each(|b| s.push(b).unwrap());
    assert!(s.buf.len() < 4096 + 16);
    assert_eq!(s.finish().unwrap().bytes, 100_000);
}

/// Shapes two multipart parsers could read differently: each is refused whole.
#[test]
fn parser_differentials_are_refused() {
    let purposes = vec!["user_data".to_string()];
    let part = |disposition: &str| {
        let mut body = format!("--XyZ\r\n{disposition}\r\n\r\nbatch\r\n").into_bytes();
        body.extend(form(&[
            ("purpose", None, "user_data"),
            ("file", Some("a"), "x"),
        ]));
        body
    };
    for disposition in [
        "content-disposition: form-data; x=\"; name=expires_after[anchor]\"; name=\"purpose\"",
        "content-disposition: form-data; name=\"expires_after[anchor]\"; name*=UTF-8''purpose",
        "content-disposition: form-data; name=\"expires_after[anchor]\"\r\ncontent-disposition: form-data; name=\"purpose\"",
        "content-disposition: form-data; name=\"expires_after[anchor]\"; name=\"purpose\"",
        "content-disposition: form-data; name=\"expires_after\\\"[anchor]\"",
        "content-disposition: form-data; name=\"expires_after[anchor]\nx: y\"",
    ] {
        assert!(check(CT, &part(disposition), &purposes).is_err(), "{disposition}");
    }
    let ok = form(&[("purpose", None, "user_data"), ("file", Some("a"), "x")]);
    // a preamble, an LF-only delimiter, text after the close, a boundary a parser
    // would cut at `;`
    let mut preamble = b"x--XyZ\r\n".to_vec();
    preamble.extend_from_slice(&ok);
    assert!(check(CT, &preamble, &purposes).is_err());
    let lf = String::from_utf8(ok.clone()).unwrap().replace("\r\n", "\n");
    assert!(check(CT, lf.as_bytes(), &purposes).is_err());
    let mut after = String::from_utf8(ok.clone()).unwrap();
    after = after.replace("--XyZ--\r\n", "--XyZ--x\r\n");
    assert!(check(CT, after.as_bytes(), &purposes).is_err());
    let quoted = "multipart/form-data; boundary=\"XyZ;cd\"";
    assert!(check(quoted, &ok, &purposes).is_err());
    assert!(check("multipart/form-data; boundary=\"XyZ\"", &ok, &purposes).is_ok());
}

#[test]
fn refuses_other_purposes_fields_and_shapes() {
    let purposes = vec!["user_data".to_string()];
    let batch = form(&[("purpose", None, "batch"), ("file", Some("a"), "x")]);
    assert_eq!(
        check(CT, &batch, &purposes).unwrap_err().param.as_deref(),
        Some("purpose")
    );
    let extra = form(&[
        ("purpose", None, "user_data"),
        ("file", Some("a"), "x"),
        ("org", None, "o"),
    ]);
    assert_eq!(
        check(CT, &extra, &purposes).unwrap_err().param.as_deref(),
        Some("org")
    );
    let no_file = form(&[("purpose", None, "user_data")]);
    assert_eq!(
        check(CT, &no_file, &purposes).unwrap_err().param.as_deref(),
        Some("file")
    );
    assert!(check("application/json", b"{}", &purposes).is_err());
    assert!(check(CT, b"--XyZ\r\nbroken", &purposes).is_err());
    // a decoy parameter is not the part's name
    let decoy = b"--XyZ\r\ncontent-disposition: form-data; xname=\"purpose\"; name=\"org\"\r\n\r\nuser_data\r\n--XyZ--\r\n";
    assert_eq!(
        check(CT, decoy, &purposes).unwrap_err().param.as_deref(),
        Some("org")
    );
    let twice = form(&[
        ("purpose", None, "user_data"),
        ("file", Some("a"), "x"),
        ("file", Some("b"), "y"),
    ]);
    assert_eq!(
        check(CT, &twice, &purposes).unwrap_err().param.as_deref(),
        Some("file")
    );
    let mut tail = form(&[("purpose", None, "user_data"), ("file", Some("a"), "x")]);
    tail.extend_from_slice(
        b"--XyZ\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ--\r\n",
    );
    assert!(check(CT, &tail, &purposes).is_err());
    let two = "multipart/form-data; boundary=XyZ; boundary=Other";
    let ok = form(&[("purpose", None, "user_data"), ("file", Some("a"), "x")]);
    assert!(check(two, &ok, &purposes).is_err());
}

#[test]
fn an_upload_is_kept_only_as_checked() {
    use crate::surface::owned::OwnedResource;
    use crate::surface::ResourceKind;
    let answer = br#"{"id": "file-abc", "purpose": "batch", "bytes": 10}"#;
    let stored = OwnedResource::created(ResourceKind::File, answer, 1).unwrap();
    let checked = |purpose: &str, bytes| Upload {
        purpose: purpose.into(),
        filename: "a.jsonl".into(),
        bytes,
    };
    assert!(upload_kept(&stored, Some(&checked("batch", 10))));
    assert!(!upload_kept(&stored, Some(&checked("fine-tune", 10))));
    assert!(!upload_kept(&stored, Some(&checked("batch", 11))));
    assert!(!upload_kept(&stored, None), "the check never saw the end");
}

#[test]
fn an_upload_not_kept_is_a_client_error_only_when_it_was_read_otherwise() {
    let otherwise = not_kept_answer(true);
    assert_eq!(
        (otherwise.status, otherwise.param.as_deref()),
        (400, Some("file"))
    );
    let unrecorded = not_kept_answer(false);
    assert_eq!(
        (unrecorded.status, unrecorded.retry_after_s),
        (503, Some(1))
    );
}
