//! The pusher driver: the Pusher HTTP API's `POST /apps/{app_id}/events`, signed as Pusher
//! specifies, so Pusher, Soketi and Laravel Reverb all accept it.
//!
//! Signing (<https://pusher.com/docs/channels/library_auth_reference/rest-api/>): the query
//! holds `auth_key`, `auth_timestamp`, `auth_version=1.0` and `body_md5` (hex MD5 of the
//! body); `auth_signature` is the hex HMAC-SHA256, keyed with the app secret, of
//! `"POST\n/apps/{id}/events\n"` followed by those pairs sorted by key and joined with `&`.

use super::{BroadcastConfig, Broadcaster};
use crate::delivery::DeliveryError;
use crate::event::{Alert, php_json};
use crate::http::Client;
use crate::secret::Secret;
use hmac::{KeyInit, Mac};
use md5::Digest;
use std::time::Duration;

/// Where the pusher driver sends events: Pusher itself (by cluster) or a compatible server
/// (Soketi, Laravel Reverb) by host, port and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherConfig {
    /// `PUSHER_APP_ID`.
    pub app_id: String,
    /// `PUSHER_APP_KEY`, sent as `auth_key`.
    pub key: String,
    /// `PUSHER_APP_SECRET`, the HMAC key; never sent.
    pub secret: Secret,
    /// `scheme://host:port`, without a trailing slash.
    pub base_url: String,
}

/// Which Pusher setting a check rejected, so the config layer can name its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `PUSHER_SCHEME`.
    Scheme,
    /// `PUSHER_HOST`.
    Host,
    /// `PUSHER_APP_CLUSTER`.
    Cluster,
}

/// The server as configured: Pusher's own by cluster unless a host is given.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// `https` or `http`.
    pub scheme: &'a str,
    /// A bare host name or IP address; empty for Pusher itself.
    pub host: &'a str,
    /// The port; `None` for the scheme's.
    pub port: Option<u16>,
    /// Pusher's cluster (`mt1`, `eu`), used when no host is given.
    pub cluster: &'a str,
}

impl Endpoint<'_> {
    /// `scheme://host:port`, or which setting makes it impossible and why.
    pub fn base_url(&self) -> Result<String, (Field, String)> {
        let scheme = self.scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err((Field::Scheme, "must be https or http".into()));
        }
        let cluster_ok = self
            .cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !cluster_ok {
            let reason = "must be a cluster name such as mt1 or eu";
            return Err((Field::Cluster, reason.into()));
        }
        let host = if self.host.is_empty() {
            if self.cluster.is_empty() {
                let reason =
                    "must be set unless PUSHER_HOST is (the host is api-{cluster}.pusher.com)";
                return Err((Field::Cluster, reason.into()));
            }
            format!("api-{}.pusher.com", self.cluster)
        } else {
            bare_host(self.host).map_err(|reason| (Field::Host, reason))?
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(format!(
            "{scheme}://{host}:{}",
            self.port.unwrap_or(default_port)
        ))
    }
}

/// A host for a URL: a name or IPv4 address as it is, an IPv6 address in brackets.
fn bare_host(host: &str) -> Result<String, String> {
    if host.contains("://") || host.contains('/') || host.contains('@') {
        return Err(
            "must be a bare host name such as soketi or 127.0.0.1; set the scheme with \
                    PUSHER_SCHEME and the port with PUSHER_PORT"
                .into(),
        );
    }
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{host}]"));
    }
    if host.contains(':') {
        return Err("must be a host name without a port; set the port with PUSHER_PORT".into());
    }
    // A character a URL's host cannot hold (a space, `?`, `#`, a control character) would
    // make the URL fail to parse, or send the request to another host (found by fuzzing).
    url::Host::parse(host).map_err(|e| format!("must be a host name or IP address ({e})"))?;
    Ok(host.to_string())
}

/// Checks an app id or key: both travel in the URL and in the signed string, so they must
/// need no escaping.
pub fn check_credential(value: &str) -> Result<(), String> {
    // A URL resolves `.` and `..` away: the request would go to another path than the one
    // signed (found by fuzzing).
    if value == "." || value == ".." {
        return Err("must not be . or ..".into());
    }
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
    {
        Ok(())
    } else {
        Err("may hold only letters, digits and - _ . ~".into())
    }
}

/// Pusher refuses an event whose `data` is over 10 KB (413).
pub const MAX_DATA_BYTES: usize = 10 * 1024;
/// Pusher accepts at most 100 channels in one trigger.
pub const MAX_CHANNELS: usize = 100;
/// Pusher's longest channel name.
pub const MAX_CHANNEL_NAME: usize = 164;
/// Pusher's longest event name.
pub const MAX_EVENT_NAME: usize = 200;

/// Checks a channel name against Pusher's rules: at most 164 characters from
/// `A-Z a-z 0-9 _ - = @ , . ;`.
pub fn check_channel(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a Pusher channel name must not be empty".into());
    }
    if name.len() > MAX_CHANNEL_NAME {
        return Err(format!(
            "a Pusher channel name is at most {MAX_CHANNEL_NAME} characters; this one has {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;".contains(*c)))
    {
        return Err(format!(
            "a Pusher channel name may hold only letters, digits and _ - = @ , . ; (not {bad:?})"
        ));
    }
    Ok(())
}

/// Checks an event name against Pusher's limit.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_EVENT_NAME {
        return Err(format!(
            "a Pusher event name must have 1 to {MAX_EVENT_NAME} characters"
        ));
    }
    Ok(())
}

/// The request body `{"name","data","channels"}`, after checking Pusher's limits, so a
/// request Pusher would refuse is never sent (and never retried).
pub fn body(event: &str, channels: &[String], data: &str) -> Result<Vec<u8>, String> {
    check_event_name(event)?;
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(format!(
            "Pusher takes 1 to {MAX_CHANNELS} channels per event, not {}",
            channels.len()
        ));
    }
    for channel in channels {
        check_channel(channel)?;
    }
    if data.len() > MAX_DATA_BYTES {
        return Err(format!(
            "the event data is {} bytes; Pusher takes at most {MAX_DATA_BYTES}",
            data.len()
        ));
    }
    let body = serde_json::json!({"name": event, "data": data, "channels": channels});
    Ok(body.to_string().into_bytes())
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path and the signed query string for POSTing `body` at `timestamp` (Unix seconds).
pub fn signed_query(app_id: &str, key: &str, secret: &str, body: &[u8], timestamp: u64) -> String {
    let path = format!("/apps/{app_id}/events");
    // Already in key order; the values need no escaping (config allows only unreserved
    // characters in the key, and the rest are digits and hex).
    let query = format!(
        "auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
        hex(&md5::Md5::digest(body))
    );
    let signature = sign(secret, &format!("POST\n{path}\n{query}"));
    format!("{query}&auth_signature={signature}")
}

/// Hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Triggers events through the Pusher HTTP API.
pub struct PusherBroadcaster {
    pusher: Option<PusherConfig>,
    channel: String,
    event: String,
    client: Client,
}

impl PusherBroadcaster {
    /// A driver for the configured server, channel and event name.
    pub fn new(config: &BroadcastConfig) -> Self {
        PusherBroadcaster {
            pusher: config.pusher.clone(),
            channel: config.channel.clone(),
            event: config.event.clone(),
            client: Client::new(),
        }
    }

    /// The event's `data` string, as Laravel's PusherBroadcaster sends it: the event data with
    /// `socket` taken out (Laravel turns it into `socket_id`; ours is always null), encoded
    /// as PHP's `json_encode` does.
    pub fn data(alert: &Alert) -> String {
        let mut data = alert.event_data();
        if let Some(fields) = data.as_object_mut() {
            fields.remove("socket");
        }
        php_json(&data)
    }
}

impl Broadcaster for PusherBroadcaster {
    fn broadcast(&mut self, alert: &Alert, timeout: Duration) -> Result<(), DeliveryError> {
        let Some(pusher) = &self.pusher else {
            return Err(DeliveryError::Permanent(
                "the pusher driver is not configured: set PUSHER_APP_ID, PUSHER_APP_KEY and \
                 PUSHER_APP_SECRET"
                    .into(),
            ));
        };
        let channels = std::slice::from_ref(&self.channel);
        let body =
            body(&self.event, channels, &Self::data(alert)).map_err(DeliveryError::Permanent)?;
        let now = crate::clock::now_secs();
        let query = signed_query(
            &pusher.app_id,
            &pusher.key,
            pusher.secret.expose(),
            &body,
            now,
        );
        let url = format!("{}/apps/{}/events?{query}", pusher.base_url, pusher.app_id);
        let target = format!("Pusher at {}", pusher.base_url);
        self.client
            .post(&url, &target, "application/json", &body, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Boundaries;

    #[test]
    fn signature_matches_pushers_documented_example() {
        // The worked example of Pusher's REST API authentication reference.
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            hex(&md5::Md5::digest(body)),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let query = signed_query(
            "3",
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            body,
            1353088179,
        );
        assert_eq!(
            query,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn channel_names() {
        assert!(check_channel("inventory").is_ok());
        assert!(check_channel("private-inventory.eu=1@a,b;c_d").is_ok());
        assert!(check_channel(&"a".repeat(164)).is_ok());
        assert!(check_channel(&"a".repeat(165)).is_err());
        assert!(check_channel("").is_err());
        let err = check_channel("inventory alerts").unwrap_err();
        assert!(err.contains("' '"), "{err}");
        assert!(check_channel("stock/alerts").is_err());
        assert!(check_channel("café").is_err());
    }

    #[test]
    fn limits_are_checked_before_sending() {
        let ok = body("e", &["c".into()], "{}").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v["data"], "{}");
        assert_eq!(v["channels"][0], "c");
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        let err = body("e", &["c".into()], &big).unwrap_err();
        assert!(err.contains("10240"), "{err}");
        assert!(body("e", &["c".into()], &"x".repeat(MAX_DATA_BYTES)).is_ok());
        let many: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        assert!(body("e", &many, "{}").unwrap_err().contains("100"));
        assert!(body("e", &[], "{}").is_err());
        assert!(body(&"e".repeat(201), &["c".into()], "{}").is_err());
    }

    #[test]
    fn data_is_laravels_json_string_without_socket() {
        let alert = Alert::new(25, 20, &Boundaries::default(), "items-listen");
        let data = PusherBroadcaster::data(&alert);
        assert!(
            data.starts_with("{\"count\":25,\"threshold\":20,"),
            "{data}"
        );
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert!(v.get("socket").is_none());
        assert_eq!(v["severity"], "high");
    }

    #[test]
    fn unconfigured_is_a_permanent_error() {
        let config = BroadcastConfig {
            drivers: vec![],
            channel: "c".into(),
            event: "e".into(),
            redis_prefix: String::new(),
            redis: crate::redis_conn::RedisConfig::url("redis://127.0.0.1"),
            pusher: None,
        };
        let alert = Alert::new(25, 20, &Boundaries::default(), "test");
        let err = PusherBroadcaster::new(&config)
            .broadcast(&alert, Duration::from_secs(1))
            .unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("PUSHER_APP_ID"), "{err}");
    }
}
