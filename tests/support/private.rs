//! Private PostgreSQL and Redis servers on free loopback ports, for tests that stop, kill or
//! pause a server and for the benchmark: never the shared services. Each is killed when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// A PostgreSQL cluster of its own (trust auth, superuser `postgres`).
pub struct PgServer {
    pub port: u16,
    pub durability: Durability,
    dir: PathBuf,
    as_root: bool,
}

impl PgServer {
    /// A [`Durability::Fast`] server.
    pub fn start() -> PgServer {
        PgServer::start_with(Durability::Fast)
    }

    pub fn start_with(durability: Durability) -> PgServer {
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
        let pg = PgServer {
            port: free_port(),
            durability,
            dir,
            as_root,
        };
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
        pg.up();
        pg
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
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.dir.display(),
            self.durability.settings()
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
            || postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok(),
        );
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

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The postmaster's pid (first line of `postmaster.pid`), while it runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to private PostgreSQL")
    }

    /// A new database on this server, migrated; returns its URL.
    pub fn create_db(&self) -> String {
        let name = format!("ib_fault_{}", super::tag());
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let url = self.url(&name);
        let mut db = inventory_broadcast::db::Db::connect(
            &inventory_broadcast::secret::Secret::new(url.clone()),
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
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits (with a deadline) until it answers PING.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!("ib-redis-{}", super::tag()));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        // Another process may take the free port between our probe and the server's bind:
        // then the server exits at once, and we try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start a private redis-server (is it installed? scripts/services)");
    }

    /// Starts the server process on `self.port`; true once it answers.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
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
            let ping = redis::Client::open(self.url()).and_then(|c| {
                let mut con = c.get_connection_with_timeout(Duration::from_millis(200))?;
                redis::cmd("PING").query::<String>(&mut con)
            });
            if ping.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client connection to this server.
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
