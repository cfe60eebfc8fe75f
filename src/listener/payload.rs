//! NOTIFY payloads: `{"count": N}` or a bare integer `N`, parsed only to say at debug what a
//! notification claims (the count rated comes from the database), and
//! shown shortened in logs so a large payload cannot flood them.

/// Payloads are shown up to this many bytes, so an 8000-byte payload cannot flood the log.
const SHOWN_MAX: usize = 120;

/// Parses a NOTIFY payload: `{"count": N}` or a bare integer `N`.
pub fn parse_payload(payload: &str) -> Result<u64, String> {
    let text = payload.trim();
    let number = if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        value
            .get("count")
            .cloned()
            .ok_or_else(|| "JSON without a \"count\" field".to_string())?
    } else {
        serde_json::Value::String(text.to_string())
    };
    let count = match &number {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    count.ok_or_else(|| {
        format!(
            "count {} is not a whole number from 0 to {}",
            short(&number.to_string()),
            u64::MAX
        )
    })
}

/// `text`, cut to [`SHOWN_MAX`] bytes (on a character boundary) with its length.
pub fn short(text: &str) -> String {
    if text.len() <= SHOWN_MAX {
        return text.to_string();
    }
    let mut end = SHOWN_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse_payload("{\"count\": 21}"), Ok(21));
        assert_eq!(parse_payload(" 21 "), Ok(21));
        assert_eq!(parse_payload("{\"count\": \"22\"}"), Ok(22));
        assert_eq!(parse_payload("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "abc",
            "-1",
            "{\"count\": -1}",
            "{\"count\": 1.5}",
            "{\"n\": 3}",
            "{",
            "18446744073709551616",
            "{\"count\": null}",
        ] {
            assert!(parse_payload(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_payload_error_is_short() {
        let big = format!("{{\"count\": \"{}\"}}", "9".repeat(8000));
        let err = parse_payload(&big).unwrap_err();
        assert!(err.len() < 300, "{}", err.len());
    }
}
