//! Packaging: every binary's `completions SHELL` and `man` (which need no configuration,
//! database or Redis), and the systemd units and env file of deploy/systemd/.

use crate::support::{bin_path, tag};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const BINARIES: [&str; 3] = ["items-listen", "queue-work", "notify"];

/// Every subcommand of each binary, as the words after the binary's name.
fn subcommands(bin: &str) -> &'static [&'static str] {
    match bin {
        "items-listen" => &["migrate", "completions", "man"],
        "queue-work" => &[
            "status",
            "failed",
            "failed list",
            "failed show",
            "failed retry",
            "failed forget",
            "failed flush",
            "completions",
            "man",
        ],
        "notify" => &["completions", "man"],
        other => panic!("unknown binary {other}"),
    }
}

/// A fresh directory for one test's files, removed with it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ib-test-{}-{name}", tag()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` to completion (a minute at most: then it is killed and the test fails).
fn run(mut cmd: Command) -> Output {
    crate::support::private::output_within(&mut cmd, Duration::from_secs(60))
}

/// `bin args…` with an environment whose configuration is invalid and whose servers are
/// unreachable: exit 0 shows that nothing was loaded or connected to.
fn run_bin(bin: &str, args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(bin_path(bin));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("INVENTORY_NOTIFICATION_THRESHOLD", "0")
        .env("INVENTORY_CONFIG", dir.join("no-such-config.toml"))
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .current_dir(dir);
    let out = run(cmd);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{bin} {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::str::from_utf8(&out.stdout).is_ok(),
        "{bin} {args:?}: not UTF-8"
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `script` (for `shell`) offers `word` as a completion candidate.
fn offers(shell: &str, script: &str, word: &str) -> bool {
    match shell {
        "bash" => script.lines().any(|line| {
            line.trim()
                .strip_prefix("opts=\"")
                .is_some_and(|opts| opts.trim_end_matches('"').split(' ').any(|w| w == word))
        }),
        "zsh" => script.contains(&format!("'{word}:")),
        "fish" => script.contains(&format!("-a \"{word}\"")),
        other => panic!("unknown shell {other}"),
    }
}

#[test]
fn completions_and_man_page_name_every_subcommand_without_a_config() {
    let dir = Scratch::new("completions");
    for bin in BINARIES {
        for shell in ["bash", "zsh", "fish"] {
            let script = stdout(&run_bin(bin, &["completions", shell], &dir));
            for sub in subcommands(bin) {
                let word = sub.rsplit(' ').next().unwrap();
                assert!(
                    offers(shell, &script, word),
                    "{bin} {shell}: no {sub}:\n{script}"
                );
            }
        }
        let page = stdout(&run_bin(bin, &["man"], &dir));
        assert!(page.starts_with(&format!(".TH {bin} 1 ")), "{bin}:\n{page}");
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS"] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "{bin}: {section}"
            );
        }
        for sub in subcommands(bin) {
            assert!(
                page.contains(&format!(".SS \"{bin} {sub}\"\n")),
                "{bin}: no {sub}:\n{page}"
            );
        }
    }
}

#[test]
fn notify_still_requires_count_without_a_subcommand() {
    let dir = Scratch::new("notify-count");
    let mut cmd = Command::new(bin_path("notify"));
    cmd.env_clear().current_dir(&dir);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--count <N>"), "{err}");
}

/// What bash completes for `words` (the last one being completed), with `bin`'s script loaded
/// as `source <(bin completions bash)` would.
fn bash_completes(dir: &Path, bin: &str, words: &[&str]) -> Vec<String> {
    let script = dir.join(format!("{bin}.bash"));
    std::fs::write(&script, run_bin(bin, &["completions", "bash"], dir).stdout).unwrap();
    // The function the script registers, called as bash calls it: (command, word, previous).
    let driver = r#"
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        spec=$(complete -p "$1")
        function=${spec##* -F }; function=${function%% *}
        "$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", driver, "bash"])
        .arg(&script)
        .args(words)
        .current_dir(dir);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_after_a_subcommand_of_a_hyphenated_binary() {
    let dir = Scratch::new("bash");
    let cases: [(&str, &[&str], &str); 7] = [
        ("queue-work", &["queue-work", "fa"], "failed"),
        ("queue-work", &["queue-work", "failed", "re"], "retry"),
        (
            "queue-work",
            &["queue-work", "failed", "retry", "--q"],
            "--queue",
        ),
        ("queue-work", &["queue-work", "status", "--j"], "--json"),
        (
            "items-listen",
            &["items-listen", "migrate", "--ch"],
            "--channel",
        ),
        (
            "items-listen",
            &["items-listen", "completions", "f"],
            "fish",
        ),
        ("notify", &["notify", "completions", "z"], "zsh"),
    ];
    for (bin, words, expected) in cases {
        let got = bash_completes(&dir, bin, words);
        assert!(got.iter().any(|w| w == expected), "{words:?}: {got:?}");
    }
}

/// The unit files with their binaries at the freshly built ones, for `systemd-analyze verify`
/// (which checks that each Exec*= command exists and is executable).
fn units_with_built_binaries(dir: &Path) -> Vec<String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&source).expect("deploy/systemd") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let mut text = std::fs::read_to_string(&path).unwrap();
            for bin in ["items-listen", "queue-work"] {
                let installed = format!("/usr/local/bin/{bin}");
                if text.contains(&installed) {
                    text = text.replace(&installed, bin_path(bin).to_str().unwrap());
                }
            }
            assert!(!text.contains("/usr/local/bin"), "{}", path.display());
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            std::fs::write(dir.join(&name), text).unwrap();
            names.push(name);
        }
    }
    names.sort();
    names
}

/// systemd-analyze, which the Debian package `systemd` brings (`scripts/services` installs
/// it where it is missing); its version.
fn systemd_analyze() -> u32 {
    let out = Command::new("systemd-analyze").arg("--version").output();
    let out = out.unwrap_or_else(|e| {
        panic!("systemd-analyze not found ({e}): run scripts/services, which installs systemd")
    });
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected systemd-analyze --version: {text}"))
}

#[test]
fn systemd_units_verify_without_warnings() {
    systemd_analyze();
    let dir = Scratch::new("systemd");
    let names = units_with_built_binaries(&dir);
    assert_eq!(names, ["items-listen.service", "queue-work@.service"]);

    // Documentation=man:…(1) is checked by running man: let it find the pages we generate.
    let man1 = dir.join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    for bin in BINARIES {
        let page = run_bin(bin, &["man"], &dir).stdout;
        std::fs::write(man1.join(format!("{bin}.1")), page).unwrap();
    }
    let verify = |units: &[&str]| {
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify");
        if Command::new("man").arg("--version").output().is_err() {
            println!("no man here: systemd-analyze verify --man=no (Documentation= unchecked)");
            cmd.arg("--man=no");
        }
        // The template is verified as an instance: %i expanded, as systemd will start it.
        cmd.args(units.iter().map(|u| dir.join(u)))
            .env("MANPATH", dir.join("man"))
            .current_dir(&dir);
        run(cmd)
    };

    let out = verify(&["items-listen.service", "queue-work@1.service"]);
    let said = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && said.is_empty(),
        "{:?}:\n{said}",
        out.status
    );

    // The same check does catch a mistake (a verify that checks nothing would pass the above).
    let unit = std::fs::read_to_string(dir.join("items-listen.service")).unwrap();
    let broken = unit.replace("Restart=on-failure", "Restrat=on-failure");
    std::fs::write(dir.join("broken.service"), broken).unwrap();
    let out = verify(&["broken.service"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Unknown key 'Restrat'"), "{said}");
}

#[test]
fn systemd_units_are_sandboxed() {
    // `security --offline` (systemd 250) rates a unit file by its sandboxing options alone.
    if systemd_analyze() < 250 {
        println!("skipped: systemd-analyze older than 250 has no security --offline");
        return;
    }
    let dir = Scratch::new("security");
    units_with_built_binaries(&dir);
    for unit in ["items-listen.service", "queue-work@1.service"] {
        let mut cmd = Command::new("systemd-analyze");
        // Exposure 2.0 of 10 at most ("OK"; the units are at 1.2): dropping an option fails.
        cmd.args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(dir.join(unit))
            .current_dir(&dir);
        let out = run(cmd);
        let said = stdout(&out);
        let level = said.lines().find(|l| l.contains("Overall exposure level"));
        assert!(out.status.success(), "{unit}: {level:?}\n{said}");
    }
}

#[test]
fn env_example_sets_only_known_variables() {
    use inventory_broadcast::config::{CONFIG_ENV, keys};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/env.example");
    let text = std::fs::read_to_string(path).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        // Settings, and settings commented out to switch on: `KEY=value`, `#KEY=value`.
        let setting = line.strip_prefix('#').unwrap_or(line);
        let Some((key, value)) = setting.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        seen += 1;
        let known = keys::by_env(key).is_some() || key == CONFIG_ENV || key == "RUST_LOG";
        assert!(known, "{line}: not a variable the binaries read");
        // systemd takes a `#` after a value as part of the value.
        assert!(!value.contains(" #"), "{line}: a comment after a value");
    }
    assert!(seen >= 10, "{seen} settings");
    for unit in ["items-listen.service", "queue-work@.service"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/systemd")
            .join(unit);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("\nEnvironmentFile=/etc/inventory-broadcast/env\n"),
            "{unit}"
        );
    }
}
