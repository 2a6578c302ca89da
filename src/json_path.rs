//! The JSON path (`$.plans.pro.spend_cap`) of a position in a JSON text, so a parse
//! error can name where it happened. serde_json reports a line and column; this walks
//! the text up to there. Written by hand because the crate that tracks paths during
//! deserialization (serde_path_to_error) adds about 7 KiB gzipped to the wasm bundle
//! for what this does after the fact in a few dozen lines.

enum Frame {
    /// An object and the key whose value is being read.
    Object(Option<String>),
    /// An array and the index of the element being read.
    Array(usize),
}

/// Byte offset of a 1-based line and column (as serde_json reports them).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// The path of the value being read at `line`:`column` of `text`.
pub fn path_at(text: &str, line: usize, column: usize) -> String {
    let end = offset_of(text, line, column);
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                key_next = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(key)) => {
                    *key = None;
                    key_next = true;
                }
                None => {}
            },
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if key_next {
                    if let Some(Frame::Object(key)) = stack.last_mut() {
                        *key = Some(text[start..i.min(bytes.len())].to_string());
                    }
                    key_next = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::from("$");
    for frame in &stack {
        match frame {
            Frame::Object(Some(key)) => {
                path.push('.');
                path.push_str(key);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of_error<T: serde::de::DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        let e = serde_json::from_str::<T>(text).unwrap_err();
        path_at(text, e.line(), e.column())
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: u32,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
        by_name: std::collections::BTreeMap<String, Item>,
    }

    #[test]
    fn names_objects_keys_and_array_indices() {
        let text = r#"{"items": [{"n": 1}, {"n": -2}], "by_name": {}}"#;
        assert_eq!(path_of_error::<Doc>(text), "$.items[1].n");
        let text =
            "{\n  \"items\": [],\n  \"by_name\": {\"a,b\": {\"n\": 1}, \"c\\\"d\": {\"m\": 2}}\n}";
        assert_eq!(path_of_error::<Doc>(text), "$.by_name.c\\\"d.m");
        assert_eq!(path_at("{\"a\": [1, 2", 1, 11), "$.a[1]");
        assert_eq!(path_at("", 1, 1), "$");
    }
}
