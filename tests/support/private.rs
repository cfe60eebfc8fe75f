//! Private PostgreSQL and Redis servers on free loopback ports, for tests that stop, kill or
//! pause a server, for TLS tests (servers that take only TLS clients) and for the benchmark:
//! never the shared services. Each is killed when dropped.

#![allow(dead_code)]

use super::tls::{CertFiles, TestPki, percent_encode};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn wait_until(what: &str, deadline: Duration, mut ready: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ready() {
        assert!(
            Instant::now() < end,
            "{what} did not happen within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion and returns its output; kills it and panics if it has not exited
/// within `within`. Stdout and stderr are read on threads, so a chatty child cannot block on a
/// full pipe while we wait for it.
pub fn output_within(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let end = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// `s` as an SQL identifier: double-quoted, inner quotes doubled.
pub fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `s` as an SQL string literal: single-quoted, inner quotes doubled. Backslashes stay as they
/// are because `standard_conforming_strings` is on (the default since PostgreSQL 9.1).
pub fn sql_literal(s: &str) -> String {
    assert!(!s.contains('\0'), "PostgreSQL strings cannot hold NUL");
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a libpq conninfo value: single-quoted, `\` and `'` backslash-escaped.
pub fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A PostgreSQL program (`initdb`, `pg_ctl`, `pgbench`): the newest /usr/lib/postgresql/N/bin
/// that has it, else PATH.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether a private PostgreSQL waits for the disk at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`: fast to start, stop and fill; for tests.
    Fast,
    /// `fsync=on`, `synchronous_commit=on`, as a production server runs: every commit waits
    /// for its WAL flush. For measuring write cost and latency.
    Durable,
}

impl Durability {
    fn settings(self) -> &'static str {
        match self {
            Durability::Fast => "-c fsync=off -c synchronous_commit=off",
            Durability::Durable => "-c fsync=on -c synchronous_commit=on",
        }
    }
}

/// [`PgServer::start_logical`]'s settings.
const LOGICAL_OPTIONS: &str =
    "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10";

/// How a TLS-only private PostgreSQL authenticates TCP clients: its one `hostssl` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTlsAuth {
    /// `scram-sha-256`: a password. A client certificate is optional, but one that is sent must
    /// chain to the server's CA or the handshake fails.
    Password,
    /// `scram-sha-256 clientcert=verify-full`: a password and a client certificate from the CA
    /// whose CN is the role name ([`super::tls::CLIENT_CN`]).
    PasswordAndCert,
    /// `cert`: a client certificate from the CA whose CN is the role name; no password.
    Cert,
}

impl PgTlsAuth {
    fn method(self) -> &'static str {
        match self {
            PgTlsAuth::Password => "scram-sha-256",
            PgTlsAuth::PasswordAndCert => "scram-sha-256 clientcert=verify-full",
            PgTlsAuth::Cert => "cert",
        }
    }
}

/// A PostgreSQL cluster of its own, superuser `postgres`. Plain ([`PgServer::start`]): trust
/// auth over TCP. TLS ([`PgServer::start_tls`]): TCP clients only over TLS with a password or
/// certificate, the superuser only over the unix socket in the server's dir. Password
/// ([`PgServer::start_password`]): the TLS server's password check without its TLS.
pub struct PgServer {
    pub port: u16,
    pub durability: Durability,
    dir: PathBuf,
    as_root: bool,
    /// The superuser comes in over the unix socket: the TCP door wants a password (and maybe
    /// TLS) that the superuser does not have.
    socket_admin: bool,
    /// More `-c name=value` server settings, passed at every start ([`PgServer::up`]).
    options: &'static str,
}

impl PgServer {
    /// A [`Durability::Fast`] server.
    pub fn start() -> PgServer {
        PgServer::start_with(Durability::Fast)
    }

    pub fn start_with(durability: Durability) -> PgServer {
        let pg = PgServer::init(durability, false);
        pg.up();
        pg
    }

    /// A [`Durability::Fast`] plain server with `wal_level = logical` (and room for slots and
    /// WAL senders), for the logical-decoding source: the shared server and
    /// [`PgServer::start`] run PostgreSQL's default, `replica`.
    pub fn start_logical() -> PgServer {
        let mut pg = PgServer::init(Durability::Fast, false);
        pg.options = LOGICAL_OPTIONS;
        pg.up();
        pg
    }

    /// A [`Durability::Fast`] server that takes TCP clients only over TLS
    /// ([`PgTlsAuth::Password`]), presenting `pki.server` (`localhost`, `127.0.0.1`) and
    /// checking client certificates against `pki.ca`.
    pub fn start_tls(pki: &TestPki) -> PgServer {
        PgServer::start_tls_with(&pki.server, &pki.ca, PgTlsAuth::Password)
    }

    /// A [`Durability::Fast`] server with `ssl = on` presenting `server`, checking client
    /// certificates against `client_ca` (`ssl_ca_file`), `password_encryption = scram-sha-256`,
    /// and a pg_hba.conf of two lines: `local all postgres trust` (setup over the socket) and
    /// `hostssl all all 127.0.0.1/32` with `auth`. No `host` line, so a client without TLS is
    /// refused. The files are copied into the server's dir, so `server` may be dropped.
    pub fn start_tls_with(server: &CertFiles, client_ca: &CertFiles, auth: PgTlsAuth) -> PgServer {
        let pg = PgServer::init(Durability::Fast, true);
        let cert = server.copy_to(&pg.dir, "server");
        let ca = pg.dir.join("ca.crt");
        std::fs::copy(&client_ca.cert, &ca).expect("copy the client CA");
        if pg.as_root {
            // The server runs as postgres and refuses a key it cannot read or that others can.
            let ok = Command::new("chown")
                .arg("postgres:")
                .args([&cert.cert, &cert.key, &ca])
                .status()
                .expect("chown");
            assert!(ok.success(), "chown the TLS files to postgres");
        }
        let conf_path = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "''"));
        pg.restrict_tcp(
            &format!(
                "ssl = on\n\
                 ssl_cert_file = {}\n\
                 ssl_key_file = {}\n\
                 ssl_ca_file = {}\n",
                conf_path(&cert.cert),
                conf_path(&cert.key),
                conf_path(&ca),
            ),
            &format!("hostssl all all 127.0.0.1/32 {}", auth.method()),
        );
        pg.up();
        pg
    }

    /// A [`Durability::Fast`] server whose TCP clients log in with a password over plain text
    /// (`host all all 127.0.0.1/32 scram-sha-256`), the superuser over the unix socket: what
    /// [`PgServer::start_tls`] checks, without the TLS, so a benchmark can tell the cost of
    /// each apart.
    pub fn start_password() -> PgServer {
        let pg = PgServer::init(Durability::Fast, true);
        pg.restrict_tcp("", "host all all 127.0.0.1/32 scram-sha-256");
        pg.up();
        pg
    }

    /// Before the first start: appends `conf` and `password_encryption = 'scram-sha-256'` to
    /// postgresql.conf, and makes pg_hba.conf two lines, the superuser's over the unix socket
    /// and `tcp` for everyone else.
    fn restrict_tcp(&self, conf: &str, tcp: &str) {
        let conf = format!(
            "\n# Test server (tests/support/private.rs)\n\
             {conf}\
             password_encryption = 'scram-sha-256'\n"
        );
        // Appending and truncating keep the files' owner (postgres) when we run as root.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .expect("open postgresql.conf");
        std::io::Write::write_all(&mut file, conf.as_bytes()).expect("append postgresql.conf");
        let hba = format!(
            "# Test server: setup over the unix socket, clients over TCP as below.\n\
             local all postgres trust\n\
             {tcp}\n"
        );
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    /// A streaming replica (hot standby) of `primary`, a plain server: `pg_basebackup -R`
    /// over TCP as `postgres` (initdb's pg_hba.conf trusts replication from 127.0.0.1, and
    /// PostgreSQL 15's defaults `wal_level = replica`, `max_wal_senders = 10` allow it), then
    /// started on a port of its own. It holds every database of the primary, and follows it
    /// until [`PgServer::promote`].
    pub fn start_replica_of(primary: &PgServer) -> PgServer {
        assert!(
            !primary.socket_admin,
            "a replica of a plain (trust over TCP) server only"
        );
        let pg = PgServer::empty(primary.durability, false);
        let mut backup = pg.cmd("pg_basebackup");
        backup
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-X",
                "stream",
                "-c",
                "fast",
                "-R",
                "--no-sync",
            ])
            .arg("-D")
            .arg(pg.data());
        let out = output_within(&mut backup, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        assert!(pg.in_recovery(), "the replica runs as a standby");
        pg
    }

    /// Whether the server is a standby (`pg_is_in_recovery()`).
    pub fn in_recovery(&self) -> bool {
        self.admin()
            .query_one("SELECT pg_is_in_recovery()", &[])
            .expect("ask pg_is_in_recovery()")
            .get(0)
    }

    /// Waits until this replica has replayed everything `primary` had written when called.
    pub fn wait_caught_up(&self, primary: &PgServer) {
        let lsn: String = primary
            .admin()
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .expect("the primary's WAL position")
            .get(0);
        let mut admin = self.admin();
        wait_until(
            "the replica replaying the primary's WAL",
            super::DEADLINE,
            || {
                admin
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .is_ok_and(|row| row.get::<_, Option<bool>>(0) == Some(true))
            },
        );
    }

    /// Promotes a standby to primary (`pg_ctl promote -w`) and waits until it takes writes
    /// (`pg_is_in_recovery()` false).
    pub fn promote(&self) {
        let mut promote = self.cmd("pg_ctl");
        promote
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "30", "promote"]);
        let out = output_within(&mut promote, Duration::from_secs(40));
        assert!(
            out.status.success(),
            "pg_ctl promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(
            "the promoted server leaving recovery",
            super::DEADLINE,
            || !self.in_recovery(),
        );
    }

    /// Creates the cluster (initdb) without starting it.
    fn init(durability: Durability, socket_admin: bool) -> PgServer {
        let pg = PgServer::empty(durability, socket_admin);
        let data = pg.data();
        let out = pg
            .cmd("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// A server's dir (owned by postgres when we run as root) and port, with no cluster yet.
    fn empty(durability: Durability, socket_admin: bool) -> PgServer {
        let dir = std::env::temp_dir().join(format!("ib-pg-{}", super::tag()));
        std::fs::create_dir_all(&dir).expect("pg dir");
        let as_root = is_root();
        if as_root {
            // PostgreSQL refuses to run as root.
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(ok.success(), "chown the private cluster to postgres");
        }
        PgServer {
            port: free_port(),
            durability,
            dir,
            as_root,
            socket_admin,
            options: "",
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn cmd(&self, bin: &str) -> Command {
        let path = pg_bin(bin);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {} {}",
            self.port,
            self.dir.display(),
            self.durability.settings(),
            self.options
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(
            "private PostgreSQL accepting connections",
            Duration::from_secs(30),
            || self.admin_config().connect(postgres::NoTls).is_ok(),
        );
    }

    /// The superuser's connection: over TCP for a plain server, over the unix socket for a TLS
    /// or password one (its only TCP door wants a password the superuser does not have).
    fn admin_config(&self) -> postgres::Config {
        if self.socket_admin {
            let mut config = postgres::Config::new();
            config
                .host_path(&self.dir)
                .port(self.port)
                .user("postgres")
                .dbname("postgres");
            config
        } else {
            self.url("postgres")
                .parse()
                .expect("private PostgreSQL URL")
        }
    }

    /// `pg_ctl stop -m fast`: what an administrator's restart does.
    pub fn stop_fast(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The superuser's trust URL of a plain server (a TLS or password server refuses it).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `postgres://USER:PASSWORD@localhost:PORT/DB`, user and password percent-encoded, no
    /// parameters: a TLS test appends its own (`?sslmode=verify-full&sslrootcert=…`).
    /// `localhost`, because that is the server certificate's name.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{}:{}@localhost:{}/{db}",
            percent_encode(user),
            percent_encode(password),
            self.port
        )
    }

    /// A libpq conninfo for `user` and `db` at `localhost` on this server's port, values
    /// quoted; append `sslmode=… sslrootcert=…` as the test needs.
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host=localhost port={} user={} dbname={}",
            self.port,
            conninfo_value(user),
            conninfo_value(db)
        )
    }

    /// Runs `psql` (the server's version) against `conninfo` with `sql`, the password in
    /// `PGPASSWORD` and no other `PG*` setting from the environment; unaligned, tuples only,
    /// never prompting. Returns the output: a refused connection is a non-zero exit.
    pub fn psql(&self, conninfo: &str, password: Option<&str>, sql: &str) -> Output {
        let mut cmd = Command::new(pg_bin("psql"));
        cmd.args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
        ])
        .args(["-c", sql])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGCONNECT_TIMEOUT", "5");
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        output_within(&mut cmd, super::DEADLINE)
    }

    /// The dir holding the unix socket (`-k`), the copied TLS files and the server log.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server log so far (connection errors are logged there with their reason).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Creates a login role with `password` (any characters but NUL; the server stores its
    /// SCRAM verifier). Sent over the superuser connection, so it is never on a command line.
    pub fn create_role(&self, role: &str, password: &str) {
        self.admin()
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                sql_ident(role),
                sql_literal(password)
            ))
            .unwrap_or_else(|e| panic!("create role {role:?}: {e}"));
    }

    /// Creates database `name` owned by `owner`.
    pub fn create_database(&self, name: &str, owner: &str) {
        self.admin()
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                sql_ident(name),
                sql_ident(owner)
            ))
            .unwrap_or_else(|e| panic!("create database {name:?}: {e}"));
    }

    /// The postmaster's pid (first line of `postmaster.pid`), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// A superuser connection to database `db` (over the unix socket for a TLS or password
    /// server).
    pub fn admin_of(&self, db: &str) -> postgres::Client {
        self.admin_config()
            .dbname(db)
            .connect(postgres::NoTls)
            .expect("connect to private PostgreSQL")
    }

    /// A superuser connection (TCP for a plain server, the unix socket for a TLS or password
    /// one).
    pub fn admin(&self) -> postgres::Client {
        self.admin_config()
            .connect(postgres::NoTls)
            .expect("connect to private PostgreSQL")
    }

    /// A new database on this server (plain servers only), migrated; returns its URL.
    pub fn create_db(&self) -> String {
        let name = format!("ib_fault_{}", super::tag());
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let url = self.url(&name);
        let mut db = inventory_broadcast::db::Db::connect(
            &inventory_broadcast::db::DatabaseConfig::plain(&url.clone()),
        )
        .expect("connect");
        inventory_broadcast::db::migrate::migrate(&mut db, "item_count").expect("migrate");
        url
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private `redis-server` on a free loopback port, for tests that must stop, pause or kill a
/// Redis (the shared one is never touched). Killed when dropped.
///
/// `pause` (SIGSTOP) makes every call to it hang: the kernel still accepts connections and
/// buffers what is sent, but nothing answers until `resume` (SIGCONT). That is a real "driver
/// that blocks until told".
///
/// [`RedisServer::start_tls`] starts one that speaks only TLS (`--port 0 --tls-port N`).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    tls: Option<RedisTls>,
}

/// TLS settings for [`RedisServer::start_tls`]: `RedisTls::new(&pki)`, then the builders.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// `--tls-cert-file`, `--tls-key-file`.
    pub server: CertFiles,
    /// `--tls-ca-cert-file`: the CA that client certificates must chain to.
    pub ca: PathBuf,
    /// `--tls-auth-clients yes` (true) or `no`: whether a client must present a certificate.
    pub auth_clients: bool,
    /// The client certificate the readiness check presents when `auth_clients` is on.
    pub client: CertFiles,
    /// `--requirepass`, passed as its own argv element (redis-server quotes it into its config,
    /// so spaces and `@ / : # % ? &` survive).
    pub password: Option<String>,
}

impl RedisTls {
    /// `pki.server` (`localhost`, `127.0.0.1`), clients checked against `pki.ca` but not
    /// required to present a certificate, no password.
    pub fn new(pki: &TestPki) -> RedisTls {
        RedisTls {
            server: pki.server.clone(),
            ca: pki.ca.cert.clone(),
            auth_clients: false,
            client: pki.client.clone(),
            password: None,
        }
    }

    /// Presents `server` instead (e.g. `pki.other_host` or `pki.expired`).
    pub fn server_cert(mut self, server: &CertFiles) -> RedisTls {
        self.server = server.clone();
        self
    }

    /// `--tls-auth-clients yes|no`.
    pub fn auth_clients(mut self, required: bool) -> RedisTls {
        self.auth_clients = required;
        self
    }

    /// `--requirepass password`.
    pub fn password(mut self, password: &str) -> RedisTls {
        self.password = Some(password.to_string());
        self
    }

    /// A copy whose files live in `dir`, so a restart does not depend on the PKI still existing.
    fn copied_to(&self, dir: &Path) -> RedisTls {
        let ca = dir.join("ca.crt");
        std::fs::copy(&self.ca, &ca).expect("copy the client CA");
        RedisTls {
            server: self.server.copy_to(dir, "server"),
            ca,
            auth_clients: self.auth_clients,
            client: self.client.copy_to(dir, "client"),
            password: self.password.clone(),
        }
    }
}

impl RedisServer {
    /// Starts a server and waits (with a deadline) until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_inner(None)
    }

    /// Starts a server that takes only TLS clients, on a free loopback port, and waits (with a
    /// deadline) until it answers PING over TLS. [`RedisServer::url`] is then a `rediss://` URL.
    pub fn start_tls(tls: RedisTls) -> RedisServer {
        RedisServer::start_inner(Some(tls))
    }

    fn start_inner(tls: Option<RedisTls>) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("ib-redis-{}", super::tag()));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        let tls = tls.map(|t| t.copied_to(&dir));
        // Another process may take the free port between our probe and the server's bind:
        // then the server exits at once, and we try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                tls: tls.clone(),
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start a private redis-server (is it installed? scripts/services)");
    }

    /// Starts the server process on `self.port`; true once it answers.
    fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&tls.server.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.server.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args([
                        "--tls-auth-clients",
                        if tls.auth_clients { "yes" } else { "no" },
                    ]);
                if let Some(password) = &tls.password {
                    cmd.arg("--requirepass").arg(password);
                }
                &mut cmd
            }
        };
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let end = Instant::now() + super::DEADLINE;
        while Instant::now() < end {
            if let Some(child) = &mut self.child {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            if self.answers_ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// One readiness probe. Over TLS it is `redis-cli --tls --insecure`: the question is
    /// whether the server answers, not whether its certificate is good (it may be the
    /// expired or wrong-name one on purpose).
    fn answers_ping(&self) -> bool {
        let Some(tls) = &self.tls else {
            let ping = redis::Client::open(self.url()).and_then(|c| {
                let mut con = c.get_connection_with_timeout(Duration::from_millis(200))?;
                redis::cmd("PING").query::<String>(&mut con)
            });
            return ping.is_ok();
        };
        let mut cmd = self.cli();
        cmd.arg("--insecure");
        if tls.auth_clients {
            cmd.arg("--cert")
                .arg(&tls.client.cert)
                .arg("--key")
                .arg(&tls.client.key);
        }
        if let Some(password) = &tls.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        let out = output_within(cmd.arg("PING"), Duration::from_secs(5));
        out.status.success() && out.stdout.starts_with(b"PONG")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or for a TLS server `rediss://localhost:PORT` (the server
    /// certificate's name; no password, no `#insecure`: a test adds what it needs).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// `redis-cli -h 127.0.0.1 -p PORT`, plus `--tls` for a TLS server, with no `REDISCLI_AUTH`
    /// from our environment. The test adds `--cacert`, `--cert`/`--key`, `REDISCLI_AUTH` and
    /// the command; run it with [`output_within`].
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .env_remove("REDISCLI_AUTH");
        if self.tls.is_some() {
            cmd.arg("--tls");
        }
        cmd
    }

    /// A client connection to this server (plain servers: the redis crate is built without
    /// TLS until the product needs it).
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_connection()
            .expect("connect to the private redis")
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("the private redis-server runs");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} redis-server");
    }

    /// Freezes the server (SIGSTOP): calls to it hang until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the server (SIGKILL, works when paused too) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server politely (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
            self.signal("TERM");
        }
        if let Some(mut child) = self.child.take() {
            let end = Instant::now() + super::DEADLINE;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
