//! Message text kept together with its JSON-escaped form. A large reply (`/fake big`, up to
//! tens of MiB) is escaped never: it is built from characters that need no escaping, so any
//! prefix of it is its own JSON string body and is shared, not copied. Small texts are escaped
//! per prefix. Responses are then assembled from these byte pieces instead of re-serializing
//! the text each time (which is slow in unoptimized test builds).

use bytes::Bytes;

/// UTF-8 text plus whether it can go into a JSON string unchanged.
#[derive(Debug, Clone)]
pub struct Text {
    raw: Bytes,
    plain: bool,
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

impl Text {
    /// Any text; checked once for characters JSON must escape.
    pub fn new(text: String) -> Self {
        let plain = !text.bytes().any(needs_escape);
        Text { raw: Bytes::from(text), plain }
    }

    /// Text the caller built from characters that need no JSON escaping (not re-checked).
    pub fn plain(text: String) -> Self {
        // Spot-check the start only: scanning all of a huge text is what this avoids.
        debug_assert!(!text.bytes().take(4096).any(needs_escape));
        Text { raw: Bytes::from(text), plain: true }
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// The whole text (it was a `String`, so it is UTF-8).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.raw).unwrap_or_default()
    }

    /// The JSON string body (no quotes) of the first `len` bytes; `len` must be a char
    /// boundary (it is clamped to the length).
    pub fn escaped_prefix(&self, len: usize) -> Bytes {
        let len = len.min(self.raw.len());
        if self.plain {
            return self.raw.slice(..len);
        }
        let prefix = self.as_str().get(..len).unwrap_or_default();
        let quoted = serde_json::to_string(prefix).unwrap_or_else(|_| "\"\"".to_string());
        let body = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or_default();
        Bytes::copy_from_slice(body.as_bytes())
    }
}

/// A small string as a JSON string literal, quotes included.
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_like_serde() {
        let text = Text::new("a\"b\\c\nd".to_string());
        assert_eq!(&text.escaped_prefix(2)[..], b"a\\\"");
        assert_eq!(&text.escaped_prefix(99)[..], b"a\\\"b\\\\c\\nd");
        let plain = Text::new("plain".to_string());
        assert_eq!(&plain.escaped_prefix(3)[..], b"pla");
        assert_eq!(quoted("x\""), "\"x\\\"\"");
    }
}
