//! Reading a file upload (`multipart/form-data`) far enough to check it: which purpose
//! it asks for, the file's name and size, and that no other field rides along. The
//! bytes are forwarded as they came once every part has been checked.

use crate::error::ApiError;

/// What a checked upload carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
}

/// Fields an upload may have besides the file itself.
const FIELDS: [&str; 3] = ["purpose", "expires_after[anchor]", "expires_after[seconds]"];

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", msg).with_param(param)
}

/// The boundary of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    // More than one boundary would let this check and the provider read different parts.
    let mut found = params.split(';').filter_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
    });
    let boundary = found.next().filter(|b| !b.is_empty() && b.len() <= 200)?;
    found.next().is_none().then_some(boundary)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A parameter (`name`, `filename`) of a part's Content-Disposition line, matched as a
/// whole parameter: `xname="…"` is not `name`.
fn disposition_param<'a>(headers: &'a str, key: &str) -> Option<&'a str> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    let (_, params) = line.split_once(':')?;
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Checks an upload against the purposes the operator allows.
pub fn check(content_type: &str, body: &[u8], purposes: &[String]) -> Result<Upload, ApiError> {
    let boundary = boundary(content_type)
        .ok_or_else(|| bad("file", "File uploads must be sent as multipart/form-data."))?;
    let delim = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delim, 0).ok_or_else(|| bad("file", "The upload has no parts."))?;
    let (mut purpose, mut file) = (None, None);
    loop {
        at += delim.len();
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
        let head_end =
            find(body, b"\r\n\r\n", at).ok_or_else(|| bad("file", "A part has no end."))?;
        let headers = std::str::from_utf8(&body[at..head_end]).unwrap_or("");
        let data_start = head_end + 4;
        let next = find(body, &[b"\r\n".as_slice(), &delim].concat(), data_start)
            .ok_or_else(|| bad("file", "The upload is cut short."))?;
        let data = &body[data_start..next];
        let name = disposition_param(headers, "name").unwrap_or("");
        match name {
            "file" => {
                let filename = disposition_param(headers, "filename").unwrap_or("upload");
                file = Some((filename.to_string(), data.len() as u64));
            }
            "purpose" => purpose = Some(String::from_utf8_lossy(data).trim().to_string()),
            n if FIELDS.contains(&n) => {}
            other => {
                let msg = format!("Unrecognized upload field: {other}");
                return Err(ApiError::bad_request("unknown_parameter", msg).with_param(other));
            }
        }
        at = next + 2;
    }
    let purpose = purpose.ok_or_else(|| bad("purpose", "Missing required field: purpose."))?;
    if !purposes.contains(&purpose) {
        let msg = format!(
            "The purpose `{purpose}` is not available; this service accepts: {}.",
            purposes.join(", ")
        );
        return Err(bad("purpose", msg));
    }
    let (filename, bytes) = file.ok_or_else(|| bad("file", "Missing required field: file."))?;
    Ok(Upload {
        purpose,
        filename,
        bytes,
    })
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
        let two = "multipart/form-data; boundary=XyZ; boundary=Other";
        let ok = form(&[("purpose", None, "user_data"), ("file", Some("a"), "x")]);
        assert!(check(two, &ok, &purposes).is_err());
    }
}
