//! The fuzz targets' checks: how each target turns raw bytes into inputs, and the properties
//! it asserts. One copy for two users: the `cargo fuzz` targets (fuzz_targets/) and the
//! regression tests of the main crate (tests/fuzz_regressions.rs includes this file), so a
//! kept input is replayed exactly as the fuzzer ran it, without libFuzzer or nightly.
//!
//! Only std, inventory-broadcast and the main crate's own dependencies may be used here.

/// A target's checks: they panic when a property does not hold.
pub type Check = fn(&[u8]);

/// Every target by name, as scripts/fuzz and the directories under fuzz/ name them.
pub const TARGETS: &[(&str, Check)] = &[
    ("notify_payload", notify_payload::check),
    ("job_envelope", job_envelope::check),
    ("config_layers", config_layers::check),
    ("pusher_request", pusher_request::check),
];

/// Separates the fields of a structured input: 0xFF never occurs in UTF-8, so a field of
/// text never has to escape it, and libFuzzer's mutations move fields around cheaply.
const SEPARATOR: u8 = 0xFF;

/// The input's fields at [`SEPARATOR`], each read as UTF-8 (invalid bytes become U+FFFD).
fn fields(data: &[u8]) -> Vec<String> {
    data.split(|b| *b == SEPARATOR)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// The NOTIFY payload check (`listener::payload::verify`) and its log shortener.
pub mod notify_payload {
    use inventory_broadcast::db::count::SigningKey;
    use inventory_broadcast::listener::payload::{short, sign, verify};

    /// An error names the problem only, never the whole payload: a log line of this size at
    /// most, even for an 8000-byte payload.
    const MAX_ERROR_BYTES: usize = 300;
    /// `short` keeps 120 bytes, less up to 3 for a character it must not split.
    const SHOWN_MIN: usize = 117;
    const SHOWN_MAX: usize = 120;

    /// The key the fuzzer's payloads are checked with (any fixed key will do: the property
    /// is that nothing passes without its signature).
    pub fn key() -> SigningKey {
        let raw = [0x5au8; 64];
        SigningKey {
            inner: raw.iter().map(|b| b ^ 0x36).collect(),
            outer: raw.iter().map(|b| b ^ 0x5c).collect(),
        }
    }

    /// The whole input is the payload (PostgreSQL's payloads are text: non-UTF-8 is skipped).
    /// A payload passes only with the signature of the very count and version it carries;
    /// an error is short; `short` cuts on a character boundary and keeps the start.
    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let key = key();
        match verify(text, &key) {
            Ok(change) => {
                assert!(change.count >= 0, "{change:?}");
                let mac = sign(&key, change.count, change.version);
                assert!(
                    text.contains(&mac),
                    "accepted without its own signature: {text}"
                );
                let canonical = format!(
                    r#"{{"count":{},"version":{},"mac":"{mac}"}}"#,
                    change.count, change.version
                );
                assert_eq!(verify(&canonical, &key), Ok(change));
            }
            Err(e) => assert!(e.len() <= MAX_ERROR_BYTES, "{} bytes: {e}", e.len()),
        }
        let shown = short(text);
        if text.len() <= SHOWN_MAX {
            assert_eq!(shown, text);
        } else {
            let (kept, _) = shown.rsplit_once("… (").expect("a cut text says so");
            assert!((SHOWN_MIN..=SHOWN_MAX).contains(&kept.len()), "{shown}");
            assert!(text.starts_with(kept), "{shown}");
        }
    }
}

/// The job envelope: `Job::decode` and `Job::encode`.
pub mod job_envelope {
    use inventory_broadcast::queue::Job;

    /// The whole input is the queue entry's bytes. Whatever decodes encodes to bytes that
    /// decode to the same job, and those bytes are stable from then on; the retry arithmetic
    /// never panics on the fields it reads.
    pub fn check(data: &[u8]) {
        let Ok(job) = Job::decode(data) else {
            return;
        };
        let bytes = job.encode();
        let again = Job::decode(&bytes).unwrap_or_else(|e| {
            panic!(
                "a decoded job's own bytes do not decode: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(again, job, "the job changed on its way through the queue");
        assert_eq!(again.encode(), bytes, "encoding is not stable");
        for attempts in [0, 1, 2, u32::MAX] {
            let _ = job.backoff_after(attempts);
            let _ = job.is_last_attempt(attempts);
        }
    }
}

/// The config layering: `Config::resolve` over a TOML file, `.env` variables, environment
/// variables and flags.
pub mod config_layers {
    use super::SEPARATOR;
    use inventory_broadcast::config::keys::{KEYS, by_env};
    use inventory_broadcast::config::{Config, Flag, Sources};
    use std::path::PathBuf;

    /// Every password-like key holds this, so a leak is easy to spot. Random letters and
    /// digits: no message, key name or default contains them, and percent-encoding or a
    /// URL's lowercasing leaves them recognisable (the search ignores case).
    const MARKER: &str = "Qz7xK9vWp3";
    /// The keys whose whole value is a secret.
    const PASSWORDS: [&str; 4] = [
        "database.password",
        "redis.password",
        "pusher.secret",
        "mail.password",
    ];
    /// The secret keys whose value is a URL: only its credentials are secret (of a Slack
    /// webhook, all but scheme, host and port). The input marks where [`MARKER`] goes
    /// with [`PLACEHOLDER`], a byte libFuzzer inserts easily.
    const SECRET_URLS: [&str; 4] = [
        "database.url",
        "redis.url",
        "broadcast.redis_url",
        "slack.webhook_url",
    ];
    const PLACEHOLDER: char = '\u{1}';
    /// Text that could make `resolve` open a device, a FIFO or /proc as a certificate
    /// (it checks sslrootcert and friends): such inputs are skipped, also percent-encoded
    /// (a URL's query), not to hang the fuzzer on a read that never ends. TOML's `\u`
    /// escapes could spell the same names.
    const SKIPPED: [&str; 5] = ["dev", "proc", "sys", "run", "\\u"];

    /// Input: the TOML file's text, then any number of settings, each one byte choosing
    /// layer (env, `.env`, flag) and variable, then its value; separated by 0xFF.
    /// A password setting's value is split in two around [`MARKER`]; a password nobody
    /// set is [`MARKER`] in the environment; in a URL-valued secret each 0x01 becomes
    /// [`MARKER`]. Resolving never panics, and neither an error nor a resolved config's
    /// `Debug` nor its warnings show [`MARKER`], unless it is also in a part that may be
    /// shown (the file, a value that is no secret, a URL's host).
    pub fn check(data: &[u8]) {
        let lossy = String::from_utf8_lossy(data).to_lowercase();
        let decoded = String::from_utf8_lossy(&percent_decoded(data)).to_lowercase();
        if SKIPPED
            .iter()
            .any(|s| lossy.contains(s) || decoded.contains(s))
        {
            return;
        }
        let vars: Vec<&'static str> = KEYS.iter().flat_map(|k| k.vars()).collect();
        let mut parts = data.split(|b| *b == SEPARATOR);
        let toml = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let mut public = vec![toml.clone()];
        let mut sources = Sources {
            file: Some((PathBuf::from("fuzz.toml"), toml)),
            ..Sources::default()
        };
        let mut dotenv = Vec::new();
        let mut passwords_set = Vec::new();
        for part in parts {
            let Some((&selector, value)) = part.split_first() else {
                continue;
            };
            let var = vars[usize::from(selector / 3) % vars.len()];
            let Some(spec) = by_env(var) else { continue };
            let mut value = String::from_utf8_lossy(value).into_owned();
            if PASSWORDS.contains(&spec.key) {
                passwords_set.push(spec.key);
                if !value.is_empty() {
                    value = with_marker(&value);
                }
            } else if SECRET_URLS.contains(&spec.key) {
                value = value.replace(PLACEHOLDER, MARKER);
                public.push(public_part(spec.key, &value));
            } else {
                public.push(value.clone());
            }
            match selector % 3 {
                0 => drop(sources.env.insert(var.to_string(), value)),
                1 => dotenv.push((var.to_string(), value)),
                _ => sources.flags.push(Flag::new(spec.key, "--fuzz", value)),
            }
        }
        for spec in KEYS.iter().filter(|k| PASSWORDS.contains(&k.key)) {
            if !passwords_set.contains(&spec.key) {
                sources.env.insert(spec.env.to_string(), MARKER.to_string());
            }
        }
        if !dotenv.is_empty() {
            sources.dotenv = Some((PathBuf::from(".env"), dotenv));
        }
        let marker = MARKER.to_lowercase();
        let shown_anyway = public.iter().any(|p| p.to_lowercase().contains(&marker));
        check_sources(&sources, !shown_anyway);
    }

    /// What of a URL-valued secret may be shown: all but its password (a Redis URL's lone
    /// user is one, and so is libpq's `password` parameter); of a Slack webhook only scheme,
    /// host and port; nothing of what is no URL.
    fn public_part(key: &str, value: &str) -> String {
        let Ok(mut url) = url::Url::parse(value.trim()) else {
            return String::new();
        };
        if key == "slack.webhook_url" {
            let host = url.host_str().unwrap_or_default();
            return format!("{}://{host}:{:?}", url.scheme(), url.port());
        }
        // Fails only for URLs without a host, which hold no credentials.
        if url.password().is_some() {
            let _ = url.set_password(None);
        } else if url.scheme().starts_with("redis") {
            let _ = url.set_username("");
        }
        if key == "database.url" {
            let rest: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "password")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            url.set_query(None);
            if !rest.is_empty() {
                url.query_pairs_mut().extend_pairs(rest);
            }
        }
        url.to_string()
    }

    /// `%XX` escapes decoded, as a URL's query is.
    fn percent_decoded(data: &[u8]) -> Vec<u8> {
        let hex = |b: u8| (b as char).to_digit(16);
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            let escape = data
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex(h[0])? * 16 + hex(h[1])?));
            match (data[i], escape) {
                (b'%', Some(byte)) => {
                    out.push(byte as u8);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    /// `value` with [`MARKER`] in its middle (on a character boundary).
    fn with_marker(value: &str) -> String {
        let mut middle = value.len() / 2;
        while !value.is_char_boundary(middle) {
            middle -= 1;
        }
        format!("{}{MARKER}{}", &value[..middle], &value[middle..])
    }

    /// Resolves `sources`; with `look_for_leaks` (the input itself never spells the marker
    /// outside a password), nothing shown may contain it.
    fn check_sources(sources: &Sources, look_for_leaks: bool) {
        let shown = match Config::resolve(sources) {
            Ok(config) => format!("{config:?}\n{}", config.warnings().join("\n")),
            Err(e) => format!("{e}\n{e:?}"),
        };
        if look_for_leaks {
            assert!(
                !shown.to_lowercase().contains(&MARKER.to_lowercase()),
                "a password is shown: {shown}\nsources: {sources:?}"
            );
        }
    }
}

/// The Pusher request builder: `body`, `signed_query`, `sign`, the name checks and
/// `Endpoint::base_url`.
pub mod pusher_request {
    use super::fields;
    use inventory_broadcast::broadcast::pusher::{
        Endpoint, body, check_channel, check_credential, check_event_name, sign, signed_query,
    };
    use serde_json::Value;

    /// Input fields (0xFF between them, missing ones empty): event name, channels (one per
    /// line), data, app id, key, secret, timestamp, scheme, host, port, cluster.
    ///
    /// A body that is built is JSON with exactly the name, channels and data given, and
    /// passed the name checks. A query always ends in its signature, which is the HMAC of
    /// the documented string. A base URL that is built parses to that scheme, port and a
    /// host, with nothing else in it; and the request URL made from it (for an app id and
    /// key the config accepts) has exactly the path and query that were signed.
    pub fn check(data: &[u8]) {
        let f = fields(data);
        let field = |i: usize| f.get(i).map_or("", String::as_str);
        let (event, data, app_id, key, secret) = (field(0), field(2), field(3), field(4), field(5));
        let channels: Vec<String> = field(1).split('\n').map(str::to_string).collect();
        let timestamp = field(6).parse::<u64>().unwrap_or(0);

        let body = match body(event, &channels, data) {
            Ok(bytes) => {
                check_body(&bytes, event, &channels, data);
                bytes
            }
            Err(_) => data.as_bytes().to_vec(),
        };

        let query = signed_query(app_id, key, secret, &body, timestamp);
        let (unsigned, signature) = query
            .rsplit_once("&auth_signature=")
            .expect("the query ends in its signature");
        let prefix = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&");
        assert!(unsigned.starts_with(&prefix), "{query}");
        let path = format!("/apps/{app_id}/events");
        assert_eq!(
            signature,
            sign(secret, &format!("POST\n{path}\n{unsigned}"))
        );
        assert_eq!(signature.len(), 64);

        let port = field(9).parse::<u16>().ok();
        let endpoint = Endpoint {
            scheme: field(7),
            host: field(8),
            port,
            cluster: field(10),
        };
        let Ok(base) = endpoint.base_url() else {
            return;
        };
        let scheme = endpoint.scheme.to_ascii_lowercase();
        let url = url::Url::parse(&base).unwrap_or_else(|e| panic!("{base:?}: {e}"));
        assert_eq!(url.scheme(), scheme, "{base:?}");
        assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{base:?}");
        let default_port = if scheme == "https" { 443 } else { 80 };
        assert_eq!(
            url.port_or_known_default(),
            Some(port.unwrap_or(default_port)),
            "{base:?}"
        );
        assert_eq!(url.path(), "/", "{base:?}");
        assert_eq!((url.query(), url.fragment()), (None, None), "{base:?}");
        assert_eq!((url.username(), url.password()), ("", None), "{base:?}");

        if app_id.is_empty() || check_credential(app_id).is_err() || check_credential(key).is_err()
        {
            return;
        }
        let request = format!("{base}/apps/{app_id}/events?{query}");
        let sent = url::Url::parse(&request).unwrap_or_else(|e| panic!("{request:?}: {e}"));
        assert_eq!(sent.host_str(), url.host_str(), "{request:?}");
        assert_eq!(
            sent.path(),
            path,
            "the server would check another path: {request:?}"
        );
        assert_eq!(sent.query(), Some(query.as_str()), "{request:?}");
    }

    fn check_body(bytes: &[u8], event: &str, channels: &[String], data: &str) {
        assert!(check_event_name(event).is_ok());
        assert!(channels.iter().all(|c| check_channel(c).is_ok()));
        let value: Value = serde_json::from_slice(bytes).expect("the body is JSON");
        let object = value.as_object().expect("the body is an object");
        assert_eq!(object.len(), 3, "{value}");
        assert_eq!(object["name"], event);
        assert_eq!(object["data"], data);
        assert_eq!(object["channels"], serde_json::json!(channels));
    }
}
