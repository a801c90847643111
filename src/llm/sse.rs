//! Incremental line framing for streamed responses: server-sent events
//! (OpenAI-compatible, Anthropic) and newline-delimited JSON (Ollama).
//! Chunks may split lines and UTF-8 characters anywhere.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Splits bytes into complete lines, keeping the unfinished tail.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            out.push(text.trim_end_matches('\r').to_string());
        }
        out
    }

    /// What is left when the stream ends: a line without its newline.
    pub fn rest(&self) -> Option<String> {
        let t = String::from_utf8_lossy(&self.buf).trim().to_string();
        (!t.is_empty()).then_some(t)
    }
}

/// Groups lines into events: `event:` and `data:` fields, dispatched on a
/// blank line; comments (`:`) ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    lines: Lines,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for line in self.lines.push(chunk) {
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                    });
                    self.data.clear();
                }
                self.event = None;
            } else if let Some(v) = line.strip_prefix("data:") {
                self.data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                self.event = Some(v.trim().to_string());
            }
        }
        out
    }

    /// An event left without its closing blank line when the stream ended.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if let Some(rest) = self.lines.rest()
            && let Some(v) = rest.strip_prefix("data:")
        {
            self.data.push(v.trim_start().to_string());
        }
        (!self.data.is_empty()).then(|| SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let mut p = SseParser::default();
        let mut all = Vec::new();
        let input = "event: a\ndata: {\"x\":\"é\"}\n\n: comment\ndata: [DONE]\n\n";
        for b in input.as_bytes().chunks(3) {
            all.extend(p.push(b));
        }
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].event.as_deref(), Some("a"));
        assert_eq!(all[0].data, "{\"x\":\"é\"}");
        assert_eq!(all[1].data, "[DONE]");
        assert!(p.finish().is_none());
    }
}
