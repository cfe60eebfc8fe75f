//! Text from outside the process (NOTIFY payloads, jobs, failed-job rows, worker heartbeats,
//! HTTP answers) made safe to print: control characters are escaped, so a payload can neither
//! forge a log line (`\n…INFO…`) nor steer a terminal (escape sequences), and bidirectional
//! overrides cannot make a line read other than it is.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` on one line: every control character escaped, newlines included.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_keeping(text, false)
}

/// `text` as a block of lines: control characters escaped, but newlines kept.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_keeping(text, true)
}

fn escape_keeping(text: &str, newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| needs_escape(c) && !(newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(escape("count 21, café"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\n2026 INFO FORGED\r\x1b[2J\x7f\u{9b}"),
            "x\\n2026 INFO FORGED\\r\\x1b[2J\\x7f\\u{9b}"
        );
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_lines("line 1\nline\t2\x1b"), "line 1\nline\\t2\\x1b");
    }
}
