//! The alert (one rated count) and the `ItemCountExeed` event that broadcasts it.

use crate::clock::now_rfc3339;
use crate::severity::{Boundaries, Severity, percentage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

/// The largest count an alert carries: 2^53 - 1, the largest integer a JavaScript number
/// (and so an Echo client's `JSON.parse`) holds exactly. Larger counts are refused where they
/// enter (the listener, `notify --count`, the threshold), never rounded in a browser.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// One rated item count: what a job carries and what every driver broadcasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per alert, so consumers can drop the duplicates at-least-once delivery allows.
    pub alert_id: Uuid,
    /// The item count.
    pub count: u64,
    /// The threshold it was rated against.
    pub threshold: u64,
    /// The rating.
    pub severity: Severity,
    /// `count / threshold` in percent, two decimals.
    pub percentage: f64,
    /// A sentence for people.
    pub message: String,
    /// When the count was rated, RFC 3339 UTC.
    pub timestamp: String,
    /// Who raised it: `items-listen`, `notify`, ….
    pub source: String,
}

impl Alert {
    /// Rates `count` and builds the alert, stamped now.
    pub fn new(count: u64, threshold: u64, boundaries: &Boundaries, source: &str) -> Alert {
        let severity = boundaries.rate(count, threshold);
        let percentage = percentage(count, threshold);
        Alert {
            alert_id: Uuid::new_v4(),
            count,
            threshold,
            severity,
            percentage,
            message: message(count, threshold, percentage, severity),
            timestamp: now_rfc3339(),
            source: source.to_string(),
        }
    }

    /// The event's `data` object, as Echo listeners receive it.
    pub fn event_data(&self) -> Value {
        json!({
            "count": self.count,
            "threshold": self.threshold,
            "severity": self.severity,
            "percentage": self.percentage,
            "message": self.message,
            "timestamp": self.timestamp,
            "source": self.source,
            "alert_id": self.alert_id,
            "socket": null,
        })
    }

    /// The exact bytes Laravel's RedisBroadcaster publishes for this event: keys in its
    /// order, and PHP `json_encode`'s escaping.
    pub fn redis_message(&self, event_name: &str) -> String {
        php_json(&json!({"event": event_name, "data": self.event_data(), "socket": null}))
    }
}

/// JSON as PHP's `json_encode` writes it by default: `/` escaped as `\/`, and every non-ASCII
/// character as `\uXXXX` (UTF-16), so consumers comparing bytes see Laravel's output.
pub fn php_json(value: &Value) -> String {
    let plain = value.to_string();
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        match c {
            // A '/' can only occur inside a JSON string, where "\/" means the same.
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out
}

fn message(count: u64, threshold: u64, pct: f64, severity: Severity) -> String {
    if severity == Severity::Info {
        format!("Item count is {count} ({pct}% of the threshold of {threshold}).")
    } else {
        format!(
            "Item count {count} has reached {pct}% of the threshold of {threshold} ({severity})."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_shape_matches_laravel_redis_broadcaster() {
        let alert = Alert::new(25, 20, &Boundaries::default(), "items-listen");
        let msg: Value =
            serde_json::from_str(&alert.redis_message("App\\Events\\ItemCountExeed")).unwrap();
        assert_eq!(msg["event"], "App\\Events\\ItemCountExeed");
        assert_eq!(msg["socket"], Value::Null);
        let data = msg["data"].as_object().unwrap();
        let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "alert_id",
                "count",
                "message",
                "percentage",
                "severity",
                "socket",
                "source",
                "threshold",
                "timestamp"
            ]
        );
        assert_eq!(data["count"], 25);
        assert_eq!(data["severity"], "high");
        assert_eq!(data["percentage"], 125.0);
        assert_eq!(data["socket"], Value::Null);
        assert!(data["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn key_order_and_escaping_match_php() {
        let alert = Alert::new(20, 20, &Boundaries::default(), "items-listen");
        let msg = alert.redis_message("App\\Events\\ItemCountExeed");
        assert!(msg.starts_with("{\"event\":\"App\\\\Events\\\\ItemCountExeed\",\"data\":{\"count\":20,\"threshold\":20,\"severity\":\"warning\",\"percentage\":100.0,"), "{msg}");
        assert!(msg.ends_with(",\"socket\":null},\"socket\":null}"), "{msg}");
        assert_eq!(
            php_json(&json!({"a": "x/y é 😀"})),
            r#"{"a":"x\/y \u00e9 \ud83d\ude00"}"#
        );
    }

    #[test]
    fn alert_round_trips_through_json() {
        let alert = Alert::new(u64::MAX, 7, &Boundaries::default(), "notify");
        let back: Alert = serde_json::from_str(&serde_json::to_string(&alert).unwrap()).unwrap();
        assert_eq!(back, alert);
    }
}
