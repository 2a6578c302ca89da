//! Reading a file upload (`multipart/form-data`) as it streams past: which purpose it
//! asks for, the file's name and size, and that no other field rides along. The bytes
//! are forwarded as they came; a refusal stops the forwarding before the upload ends,
//! so the provider never receives a complete upload edgemeter refused.

use crate::error::ApiError;
use std::collections::BTreeMap;

/// What a checked upload carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
}

impl Upload {
    /// Whether the provider stored what this check read: the same purpose and size. A
    /// parser that read the upload another way (another purpose, another file) is
    /// caught here, whatever the differential was.
    pub fn stored_as(&self, stored: &super::owned::OwnedResource) -> bool {
        stored.purpose == self.purpose && stored.bytes == self.bytes
    }
}

/// Fields an upload may have besides the file itself.
const FIELDS: [&str; 3] = ["purpose", "expires_after[anchor]", "expires_after[seconds]"];

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", msg).with_param(param)
}

/// The boundary of a `multipart/form-data` content type. Only RFC 2046's boundary
/// characters are accepted, and only once: anything a parser could read another way
/// (`;` or `"` inside a quoted boundary, two boundaries) is refused.
fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let mut found = params.split(';').filter_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then_some(v.trim())
    });
    let raw = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let value = match raw.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => raw,
    };
    let bchar = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b);
    ((1..=70).contains(&value.len()) && value.bytes().all(bchar)).then_some(value)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parameters of a part's one Content-Disposition header, read as a quote-aware
/// parser reads them. Anything two parsers could read differently is refused: a bare CR
/// or LF, a second Content-Disposition, a parameter given twice, an extended (`name*`)
/// parameter, an unbalanced quote, a backslash escape.
fn disposition(headers: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let malformed = |what: &str| {
        bad(
            "file",
            format!("The upload's part headers are malformed: {what}."),
        )
    };
    let mut found = None;
    for line in headers.split("\r\n") {
        if line.contains(['\r', '\n']) {
            return Err(malformed("a bare line break"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(malformed("a line that is not a header"));
        };
        if name.trim().eq_ignore_ascii_case("content-disposition") && found.replace(value).is_some()
        {
            return Err(malformed("two Content-Disposition headers"));
        }
    }
    let value = found.ok_or_else(|| malformed("no Content-Disposition"))?;
    if value.contains('\\') {
        return Err(malformed("a backslash"));
    }
    let mut params = BTreeMap::new();
    for piece in split_params(value).ok_or_else(|| malformed("an unbalanced quote"))? {
        let Some((k, v)) = piece.split_once('=') else {
            continue; // the `form-data` disposition type itself
        };
        let key = k.trim().to_ascii_lowercase();
        if key.ends_with('*') {
            return Err(malformed("an extended parameter"));
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(v);
        if params.insert(key, v.to_string()).is_some() {
            return Err(malformed("a parameter given twice"));
        }
    }
    Ok(params)
}

/// Splits header parameters on `;` outside quotes; `None` for an unbalanced quote.
fn split_params(value: &str) -> Option<Vec<&str>> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    (!quoted).then_some(out)
}

/// A part's headers longer than this are refused; so is a non-file field's value
/// longer than `FIELD_LIMIT`. The file itself is only counted, never kept.
const HEADER_LIMIT: usize = 16 * 1024;
const FIELD_LIMIT: usize = 1024;

/// The part being read.
struct Part {
    name: String,
    filename: Option<String>,
    len: u64,
    /// The value of a small field (`purpose`); empty for the file.
    kept: Vec<u8>,
}

impl Part {
    fn take(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        self.len += bytes.len() as u64;
        if self.name != "file" {
            if self.kept.len() + bytes.len() > FIELD_LIMIT {
                return Err(bad(&self.name, format!("`{}` is too long.", self.name)));
            }
            self.kept.extend_from_slice(bytes);
        }
        Ok(())
    }
}

enum State {
    /// Before the first boundary.
    Preamble,
    /// Right after a boundary: `--` ends the upload, a line break starts a part.
    AfterBoundary,
    Headers,
    Data(Part),
    Done,
}

/// Checks an upload as its bytes arrive, so it can be forwarded while it is read: each
/// part must be a known field, the purpose one the operator allows (refused as soon as
/// it is read), and the file and purpose each appear once.
pub struct Scanner {
    /// `--boundary`, and the `\r\n--boundary` that ends a part's data.
    first: Vec<u8>,
    delim: Vec<u8>,
    purposes: Vec<String>,
    buf: Vec<u8>,
    state: State,
    purpose: Option<String>,
    file: Option<(String, u64)>,
}

impl Scanner {
    pub fn new(content_type: &str, purposes: &[String]) -> Result<Scanner, ApiError> {
        let boundary = boundary(content_type)
            .ok_or_else(|| bad("file", "File uploads must be sent as multipart/form-data."))?;
        Ok(Scanner {
            first: format!("--{boundary}").into_bytes(),
            delim: format!("\r\n--{boundary}").into_bytes(),
            purposes: purposes.to_vec(),
            buf: Vec::new(),
            state: State::Preamble,
            purpose: None,
            file: None,
        })
    }

    /// Reads the next bytes of the upload; an error refuses it.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.buf.extend_from_slice(chunk);
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                // The body starts with its first boundary: a preamble is where parsers
                // disagree on what the first part is.
                State::Preamble if self.buf.len() < self.first.len() => {
                    self.state = State::Preamble;
                    return Ok(());
                }
                State::Preamble if self.buf.starts_with(&self.first) => {
                    self.buf.drain(..self.first.len());
                    self.state = State::AfterBoundary;
                }
                State::Preamble => {
                    return Err(bad("file", "The upload must start with its boundary."));
                }
                State::AfterBoundary => match self.buf.get(..2) {
                    None => {
                        self.state = State::AfterBoundary;
                        return Ok(());
                    }
                    Some(b"--") => {
                        self.buf.drain(..2);
                        // Nothing but line ends may follow: a parser that reads on would
                        // see parts this check never saw.
                        self.state = State::Done;
                    }
                    Some(b"\r\n") => {
                        self.buf.drain(..2);
                        self.state = State::Headers;
                    }
                    Some(_) => return Err(bad("file", "The upload is not well-formed multipart.")),
                },
                State::Headers => match find(&self.buf, b"\r\n\r\n", 0) {
                    Some(i) => {
                        if find(&self.buf[..i], &self.first, 0).is_some() {
                            return Err(bad("file", "A part's headers hold the boundary."));
                        }
                        let headers = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                        self.buf.drain(..i + 4);
                        self.state = State::Data(self.part(&headers)?);
                    }
                    None if self.buf.len() > HEADER_LIMIT => {
                        return Err(bad("file", "A part's headers are too long."))
                    }
                    None => {
                        self.state = State::Headers;
                        return Ok(());
                    }
                },
                State::Data(mut part) => match find(&self.buf, &self.delim, 0) {
                    Some(i) => {
                        part.take(&self.buf[..i])?;
                        self.buf.drain(..i + self.delim.len());
                        self.end_part(part)?;
                        self.state = State::AfterBoundary;
                    }
                    None => {
                        // Keep what could be the start of the boundary.
                        let n = self.buf.len().saturating_sub(self.delim.len() - 1);
                        part.take(&self.buf[..n])?;
                        self.buf.drain(..n);
                        self.state = State::Data(part);
                        return Ok(());
                    }
                },
                State::Done => {
                    if self.buf.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
                        return Err(bad("file", "Nothing may follow the end of the upload."));
                    }
                    self.buf.clear();
                    return Ok(());
                }
            }
        }
    }

    /// A part from its headers: only the file and the known fields may come.
    fn part(&self, headers: &str) -> Result<Part, ApiError> {
        let mut params = disposition(headers)?;
        let name = params.remove("name").unwrap_or_default();
        if name != "file" && !FIELDS.contains(&name.as_str()) {
            let msg = format!("Unrecognized upload field: {name}");
            return Err(ApiError::bad_request("unknown_parameter", msg).with_param(name));
        }
        Ok(Part {
            name,
            filename: params.remove("filename"),
            len: 0,
            kept: Vec::new(),
        })
    }

    fn end_part(&mut self, part: Part) -> Result<(), ApiError> {
        match part.name.as_str() {
            "file" if self.file.is_some() => Err(bad("file", "Send one file per upload.")),
            "file" => {
                let name = part.filename.unwrap_or_else(|| "upload".into());
                self.file = Some((name, part.len));
                Ok(())
            }
            "purpose" if self.purpose.is_some() => Err(bad("purpose", "Send one purpose.")),
            "purpose" => {
                let purpose = String::from_utf8_lossy(&part.kept).trim().to_string();
                if !self.purposes.contains(&purpose) {
                    let msg = format!(
                        "The purpose `{purpose}` is not available; this service accepts: {}.",
                        self.purposes.join(", ")
                    );
                    return Err(bad("purpose", msg));
                }
                self.purpose = Some(purpose);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The upload once every byte was read; an error refuses it.
    pub fn finish(self) -> Result<Upload, ApiError> {
        if !matches!(self.state, State::Done) {
            return Err(bad("file", "The upload is cut short."));
        }
        let purpose = self
            .purpose
            .ok_or_else(|| bad("purpose", "Missing required field: purpose."))?;
        let (filename, bytes) = self
            .file
            .ok_or_else(|| bad("file", "Missing required field: file."))?;
        Ok(Upload {
            purpose,
            filename,
            bytes,
        })
    }
}

/// Checks a whole upload against the purposes the operator allows.
pub fn check(content_type: &str, body: &[u8], purposes: &[String]) -> Result<Upload, ApiError> {
    let mut scanner = Scanner::new(content_type, purposes)?;
    scanner.push(body)?;
    scanner.finish()
}

#[cfg(test)]
mod tests {
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
        tail.extend_from_slice(b"--XyZ\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ--\r\n");
        assert!(check(CT, &tail, &purposes).is_err());
        let two = "multipart/form-data; boundary=XyZ; boundary=Other";
        let ok = form(&[("purpose", None, "user_data"), ("file", Some("a"), "x")]);
        assert!(check(two, &ok, &purposes).is_err());
    }
}
