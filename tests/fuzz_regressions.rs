//! The fuzz targets' kept inputs, replayed under `cargo test` through the very checks the
//! fuzzers run (fuzz/src/lib.rs, included below), so neither cargo-fuzz nor a nightly
//! compiler is needed to keep their findings fixed. Findings live in
//! fuzz/regressions/<target>/, hand-made seeds in fuzz/corpus/<target>/ (scripts/fuzz).

use inventory_broadcast::broadcast::pusher::{Endpoint, Field, check_credential};
use inventory_broadcast::config::{Config, Sources};
use inventory_broadcast::secret::redact_url;
use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
mod checks;

/// Runs every file under fuzz/<kind>/<target>/ through its target's checks; the failures
/// are named together, so one run shows them all.
fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut failed = Vec::new();
    let mut count = 0;
    for (target, check) in checks::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory").path();
            let data = std::fs::read(&path).expect("a readable input");
            count += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their checks: {failed:#?}"
    );
    count
}

#[test]
fn every_kept_finding_passes() {
    assert!(replay("regressions") > 0, "the findings are gone");
}

#[test]
fn every_seed_passes() {
    assert!(
        replay("corpus") >= checks::TARGETS.len(),
        "the seeds are gone"
    );
}

/// The config's error for `var` = `value`, which must be one.
fn config_error(var: &str, value: &str) -> String {
    let sources = Sources {
        env: [(var.to_string(), value.to_string())].into(),
        ..Sources::default()
    };
    match Config::resolve(&sources) {
        Ok(_) => panic!("{var}={value:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// pusher_request: `PUSHER_HOST` passed its check with characters no URL host holds
/// (here NUL; a space, `?`, `#` alike), so the base URL did not parse, or named another
/// host than the one given (`a?b` is host `a`).
#[test]
fn pusher_host_that_is_no_host() {
    checks::pusher_request::check(include_bytes!(
        "../fuzz/regressions/pusher_request/crash-88dba827a2c4dc8119b8adad5d2fba3ec196047e"
    ));
    checks::pusher_request::check(include_bytes!(
        "../fuzz/regressions/pusher_request/minimized-host-nul"
    ));
    for host in ["\0", "a b", "a?b", "a#b", "a\tb", "[x", "a%"] {
        let endpoint = Endpoint {
            scheme: "https",
            host,
            port: None,
            cluster: "",
        };
        assert!(
            matches!(endpoint.base_url(), Err((Field::Host, _))),
            "{host:?}"
        );
    }
    let msg = config_error("PUSHER_HOST", "soketi?x");
    assert!(msg.contains("pusher.host"), "{msg}");
}

/// pusher_request: app id `.` (or `..`) passed its check, but a URL resolves
/// `/apps/./events` to `/apps/events`: the request went to another path than the one
/// signed, so every event was refused.
#[test]
fn pusher_app_id_that_a_url_resolves_away() {
    checks::pusher_request::check(include_bytes!(
        "../fuzz/regressions/pusher_request/crash-1c4036dbe1820bbae8086a27d90d99a21ce5866c"
    ));
    assert!(check_credential(".").is_err());
    assert!(check_credential("..").is_err());
    assert!(check_credential("app.1").is_ok());
    let msg = config_error("PUSHER_APP_ID", "..");
    assert!(msg.contains("pusher.app_id"), "{msg}");
}

/// job_envelope: a job whose `percentage` had many digits decoded 1 ULP off, and so did
/// the shortest form serde_json wrote back (`125.2222222222222` read as
/// `125.22222222222221`): a job changed on each trip through the queue. serde_json's
/// `float_roundtrip` feature (Cargo.toml) reads floats exactly.
#[test]
fn job_percentage_survives_the_queue() {
    checks::job_envelope::check(include_bytes!(
        "../fuzz/regressions/job_envelope/crash-34fb12a14697af32ce79564abcffac699dabf614"
    ));
    for text in [
        "125.2222222222222",
        "125.22222222222221",
        "0.30000000000000004",
    ] {
        let value: f64 = serde_json::from_str(text).expect("a number");
        assert_eq!(value, text.parse::<f64>().expect("a number"), "{text}");
    }
}

/// config_layers: a `DATABASE_URL` with libpq's `?password=…` parameter was shown whole in
/// a config error (`redact_url` hid only the URL's user-info password).
#[test]
fn database_url_password_parameter_is_hidden() {
    checks::config_layers::check(include_bytes!(
        "../fuzz/regressions/config_layers/crash-8d4b8e50521bbcd56d8f277042f808b9508e7622"
    ));
    let shown = redact_url("postgres://u@db/inv?sslmode=require&password=hunter2");
    assert_eq!(shown, "postgres://u@db/inv?sslmode=require&password=***");
    let msg = config_error(
        "DATABASE_URL",
        "postgres://db/inv?password=hunter2&sslmode=sometimes",
    );
    assert!(
        msg.contains("database.url") && !msg.contains("hunter2"),
        "{msg}"
    );
}
