//! An incremental Server-Sent Events scanner that keeps each event's exact bytes.
//!
//! Written by hand because SSE decoder crates hand out parsed events and drop the raw
//! bytes, while the proxy must forward the stream byte for byte (and drop whole events,
//! never half of one). Lines end in `\n`, `\r\n` or `\r`; a blank line ends an event.

/// Splits a byte stream into complete SSE events, holding back only an unfinished tail.
#[derive(Debug, Default)]
pub struct SseScanner {
    buf: Vec<u8>,
    /// How far `buf` has been scanned.
    pos: usize,
    /// Where the line being scanned starts.
    line_start: usize,
}

impl SseScanner {
    /// Feeds bytes in; returns every event completed by them, each with its terminator.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut i = self.pos;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            if b == b'\r' {
                match self.buf.get(i + 1) {
                    None => break, // a `\n` may follow in the next chunk
                    Some(b'\n') => end = i + 2,
                    Some(_) => {}
                }
            }
            if i == self.line_start {
                events.push(self.buf[event_start..end].to_vec());
                event_start = end;
            }
            self.line_start = end;
            i = end;
        }
        self.buf.drain(..event_start);
        self.pos = i - event_start;
        self.line_start -= event_start;
        events
    }

    /// Bytes of an event the stream ended in the middle of.
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.pos = 0;
        self.line_start = 0;
        std::mem::take(&mut self.buf)
    }
}

/// The event's `data` lines joined by `\n`, or `None` when it has none.
pub fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if let Some(rest) = line.strip_prefix("data:") {
            let value = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b": keep-alive\n\ndata: {\"a\":1}\n\nevent: message_delta\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n";

    fn scan_in_pieces(size: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut s = SseScanner::default();
        let events = STREAM.chunks(size).flat_map(|c| s.push(c)).collect();
        (events, s.take_rest())
    }

    #[test]
    fn events_are_identical_whatever_the_chunking() {
        let (whole, rest) = scan_in_pieces(STREAM.len());
        assert!(rest.is_empty());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole.concat(), STREAM);
        for size in 1..STREAM.len() {
            assert_eq!(scan_in_pieces(size).0, whole, "chunk size {size}");
        }
    }

    #[test]
    fn data_lines_are_joined() {
        let (events, _) = scan_in_pieces(7);
        assert_eq!(event_data(&events[0]), None);
        assert_eq!(event_data(&events[1]).unwrap(), r#"{"a":1}"#);
        assert_eq!(event_data(&events[2]).unwrap(), "{\"b\":\n2}");
        assert_eq!(event_data(&events[3]).unwrap(), "[DONE]");
    }

    #[test]
    fn unfinished_tail_is_held_back_and_returned() {
        let mut s = SseScanner::default();
        assert_eq!(s.push(b"data: {\"a\":1}\n\ndata: {\"par").len(), 1);
        assert_eq!(s.take_rest(), b"data: {\"par");
    }

    #[test]
    fn lone_carriage_returns_end_lines() {
        let mut s = SseScanner::default();
        let events = s.push(b"data: x\r\rdata: y\r");
        assert_eq!(events, vec![b"data: x\r\r".to_vec()]);
        // A final `\r` may be the first half of `\r\n`, so it waits for one more byte.
        assert!(s.push(b"\r").is_empty());
        assert_eq!(s.push(b"data: z"), vec![b"data: y\r\r".to_vec()]);
    }
}
