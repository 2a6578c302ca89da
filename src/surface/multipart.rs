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

/// Whether an uploaded file the provider stored is kept for its owner: only when it is
/// what the upload's check read. Stored otherwise (another purpose or size, or stored
/// though the check never saw the upload end), it is removed, not left in the shared
/// account.
pub fn upload_kept(stored: &super::owned::OwnedResource, checked: Option<&Upload>) -> bool {
    checked.is_some_and(|up| up.stored_as(stored))
}

/// The answer to an upload the provider stored but that was not kept (and so removed):
/// 400 when the provider read it other than the check did, 503 when it could not be
/// recorded for its owner (a retry can succeed).
pub fn not_kept_answer(read_otherwise: bool) -> ApiError {
    match read_otherwise {
        true => {
            let msg = "The provider read this upload other than edgemeter checked it, so it was not kept. Send a plain multipart/form-data upload.";
            ApiError::bad_request("invalid_value", msg).with_param("file")
        }
        false => {
            let msg = "The upload could not be recorded for your account, so it was not kept. Please retry.";
            ApiError::unavailable(msg)
        }
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
#[path = "multipart_tests.rs"]
mod tests;
