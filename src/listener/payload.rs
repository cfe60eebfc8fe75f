//! NOTIFY payloads. Anyone who can log in may NOTIFY, so a payload is rated only when it
//! carries the trigger's signature (HMAC-SHA256 of `count:version` with the key only the
//! tables' owner can read) and a version above the last one rated. Payloads are shown
//! shortened and escaped, so a large or hostile one cannot flood or forge the log.

use crate::db::count::{Change, SigningKey};
use sha2::{Digest, Sha256};

/// Payloads are shown up to this many bytes, so an 8000-byte payload cannot flood the log.
const SHOWN_MAX: usize = 120;

/// The change a signed payload `{"count": N, "version": V, "mac": "hex"}` announces, or why
/// it is not one the trigger sent.
pub fn verify(payload: &str, key: &SigningKey) -> Result<Change, String> {
    let value: serde_json::Value =
        serde_json::from_str(payload.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| {
        value
            .get(name)
            .ok_or_else(|| format!("no \"{name}\" field"))
    };
    let count = field("count")?
        .as_i64()
        .filter(|n| *n >= 0)
        .ok_or("the count is not a whole number from 0")?;
    let version = field("version")?
        .as_i64()
        .ok_or("the version is not a whole number")?;
    let mac = field("mac")?.as_str().ok_or("the signature is not text")?;
    if !same(mac.as_bytes(), sign(key, count, version).as_bytes()) {
        return Err("the signature is not the trigger's (forged, or another database's)".into());
    }
    Ok(Change { version, count })
}

/// The trigger's signature of a change: hex HMAC-SHA256 of `count:version`.
pub fn sign(key: &SigningKey, count: i64, version: i64) -> String {
    let inner = Sha256::new()
        .chain_update(&key.inner)
        .chain_update(format!("{count}:{version}"))
        .finalize();
    let outer = Sha256::new()
        .chain_update(&key.outer)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in a time that does not depend on where they first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    fn key() -> SigningKey {
        let raw = [7u8; 64];
        SigningKey {
            inner: raw.iter().map(|b| b ^ 0x36).collect(),
            outer: raw.iter().map(|b| b ^ 0x5c).collect(),
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_count_and_version() {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&[7u8; 64]).unwrap();
        mac.update(b"21:5");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sign(&key(), 21, 5), expected);
    }

    #[test]
    fn only_signed_payloads_pass() {
        let k = key();
        let good = format!(r#"{{"count":21,"version":5,"mac":"{}"}}"#, sign(&k, 21, 5));
        assert_eq!(
            verify(&good, &k),
            Ok(Change {
                version: 5,
                count: 21
            })
        );
        let lie = format!(
            r#"{{"count":1000,"version":5,"mac":"{}"}}"#,
            sign(&k, 21, 5)
        );
        assert!(verify(&lie, &k).unwrap_err().contains("signature"));
        for bad in [
            "21",
            "{\"count\": 21}",
            "",
            "{",
            "{\"count\":-1,\"version\":1,\"mac\":\"\"}",
        ] {
            assert!(verify(bad, &k).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_payloads_are_shown_short() {
        let big = "9".repeat(8000);
        assert!(short(&big).len() < 200);
        assert!(verify(&big, &key()).unwrap_err().len() < 300);
    }
}
