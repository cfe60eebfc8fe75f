//! A small synchronous client of PostgreSQL's streaming replication protocol, for logical
//! decoding with `pgoutput`: the server decodes each WAL record once and streams the changes,
//! where reading through SQL (`pg_logical_slot_peek_binary_changes`) decodes again from the
//! slot's `restart_lsn` on every call.
//!
//! The `postgres` crate cannot open a replication connection (no CopyBoth), so this speaks
//! the protocol itself on top of `postgres-protocol` (message building, SCRAM, md5): the same
//! URL, hosts, TLS modes ([`super::tls`]) and passwords as [`super::Db::connect`].
//!
//! ```text
//! let mut repl = ReplicationConnection::connect(&config, "inventory-listener")?;
//! repl.start("slot", 0, "publication")?;
//! loop {
//!     // None: nothing within the wait (keepalives are answered meanwhile).
//!     if let Some(event) = repl.next(Duration::from_secs(1))? { … repl.confirm(end_lsn)?; }
//! }
//! ```
//!
//! The server is answered without the caller's help: a keepalive that asks for a reply gets
//! one, and a status update (with the position last confirmed) goes out every 10 s, asking
//! for a reply so that a server gone silent is noticed (an error after 60 s without a byte).

use super::logical::format_lsn;
use super::{DatabaseConfig, DbError, SslMode};
use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A backend message larger than this is refused (a pgoutput message of `items` is tiny; a
/// frame this big means a confused stream).
const MAX_FRAME: usize = 64 << 20;
/// A status update goes out at least this often (the server drops a standby silent for
/// `wal_sender_timeout`, 60 s by default).
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// No byte from the server for this long, although each status update asks for a reply: the
/// connection is dead (a half-open TCP connection would otherwise wait for hours).
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Longest START_REPLICATION may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a write may block (a full send buffer towards a server that went away).
const WRITE_TIMEOUT: Duration = Duration::from_secs(25);
/// Microseconds between 1970-01-01 and 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One decoded change of the stream (pgoutput, protocol version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A transaction begins; its changes follow, then its [`Event::Commit`].
    Begin {
        /// Its transaction id.
        xid: u32,
    },
    /// A row inserted into a published table.
    Insert,
    /// A row deleted from a published table.
    Delete,
    /// Published tables truncated.
    Truncate,
    /// The transaction committed.
    Commit {
        /// Where its commit record is.
        commit_lsn: u64,
        /// Just past its commit record: the position to [`ReplicationConnection::confirm`]
        /// once the transaction is dealt with.
        end_lsn: u64,
    },
}

/// The socket: plain TCP, TLS over TCP, or a Unix socket.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        // Zero means "block forever" to the socket: wait at least a millisecond instead.
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_read_timeout(timeout),
            Stream::Tls(s) => s.sock.set_read_timeout(timeout),
            Stream::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_write_timeout(timeout),
            Stream::Tls(s) => s.sock.set_write_timeout(timeout),
            Stream::Unix(s) => s.set_write_timeout(timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// One backend message: its type byte and its body (without the length).
struct Frame {
    tag: u8,
    body: Vec<u8>,
}

/// A step of the session, failing in words. While connecting, any failure sends us on to the
/// next host (as libpq: refused, authentication failed, or a server of the wrong kind).
type Attempt<T> = Result<T, String>;

/// A replication connection (`replication=database`) to the server that holds the slot.
pub struct ReplicationConnection {
    stream: Stream,
    /// Bytes read; those before `taken` were taken as whole messages.
    buf: Vec<u8>,
    taken: usize,
    target: String,
    /// In CopyBoth mode (after [`ReplicationConnection::start`]).
    streaming: bool,
    /// The position last confirmed (sent as written, flushed and applied).
    confirmed: u64,
    /// The end of WAL the server last told of (XLogData or keepalive).
    wal_end: u64,
    last_status: Instant,
    last_received: Instant,
}

impl ReplicationConnection {
    /// Connects as [`super::Db::connect_as`] does (URL, hosts in turn, TLS as configured,
    /// password by cleartext, md5 or SCRAM-SHA-256), in replication mode for the URL's
    /// database. Several hosts: the first that takes the session and is a primary, unless the
    /// URL says another `target_session_attrs`.
    pub fn connect(
        config: &DatabaseConfig,
        application_name: &str,
    ) -> Result<ReplicationConnection, DbError> {
        let url = config.url.expose();
        let target = super::describe(url);
        let failed = |reason: String| DbError::Connect {
            target: target.clone(),
            reason,
        };
        let cfg: postgres::Config = url.parse().map_err(|e| failed(super::reason(&e)))?;
        let read_write = super::wants_primary(url, &cfg)
            || cfg.get_target_session_attrs() == postgres::config::TargetSessionAttrs::ReadWrite;
        let tls = config.tls.client_config().map_err(&failed)?.map(Arc::new);
        let user = match cfg.get_user() {
            Some(user) => user.to_string(),
            None => std::env::var("USER")
                .map_err(|_| failed("no user in the URL and USER is not set".into()))?,
        };
        let startup = Startup {
            user: &user,
            password: cfg.get_password(),
            dbname: cfg.get_dbname(),
            application_name,
            options: options(&cfg),
            read_write,
        };
        let hosts = cfg.get_hosts();
        let addrs = cfg.get_hostaddrs();
        let ports = cfg.get_ports();
        let count = hosts.len().max(addrs.len());
        if count == 0 {
            return Err(failed("the URL names no host".into()));
        }
        let mut last = String::new();
        for i in 0..count {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let attempt = match (hosts.get(i), addrs.get(i)) {
                (_, Some(ip)) => {
                    let name = match hosts.get(i) {
                        Some(postgres::config::Host::Tcp(h)) => h.clone(),
                        _ => ip.to_string(),
                    };
                    connect_tcp(&name, (*ip, port), config.tls.mode, tls.as_ref())
                }
                (Some(postgres::config::Host::Tcp(host)), None) => {
                    connect_tcp(host, (host.as_str(), port), config.tls.mode, tls.as_ref())
                }
                (Some(postgres::config::Host::Unix(dir)), None) => {
                    let path = dir.join(format!(".s.PGSQL.{port}"));
                    UnixStream::connect(&path)
                        .map(Stream::Unix)
                        .map_err(|e| format!("{}: {e}", path.display()))
                }
                (None, None) => Err("no host".to_string()),
            };
            let mut conn = match attempt {
                Ok(stream) => ReplicationConnection {
                    stream,
                    buf: Vec::new(),
                    taken: 0,
                    target: target.clone(),
                    streaming: false,
                    confirmed: 0,
                    wal_end: 0,
                    last_status: Instant::now(),
                    last_received: Instant::now(),
                },
                Err(why) => {
                    last = why;
                    continue;
                }
            };
            match conn.startup(&startup) {
                Ok(()) => return Ok(conn),
                Err(why) => last = why,
            }
        }
        Err(failed(if count > 1 {
            let wanted = if read_write { "read-write" } else { "any" };
            format!(
                "no host took a replication session (target_session_attrs={wanted}); the last \
                 one tried: {last}"
            )
        } else {
            last
        }))
    }

    /// The server as shown in messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The end of WAL the server last reported (keepalives and change messages). With every
    /// change received dealt with, confirming this lets the slot move past WAL of tables not
    /// published (transactions with nothing published are not sent at all).
    pub fn wal_end(&self) -> u64 {
        self.wal_end
    }

    /// The position last confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Starts streaming the slot's changes for `publication`, from `start_lsn` (0: from the
    /// slot's confirmed position; an earlier position than that is taken as it, too).
    pub fn start(&mut self, slot: &str, start_lsn: u64, publication: &str) -> Result<(), DbError> {
        if self.streaming {
            return Err(self.query_error("replication has already started".into()));
        }
        let command = start_command(slot, start_lsn, publication);
        self.send(|buf| frontend::query(&command, buf))
            .map_err(|e| self.connect_error(e))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let frame = self
                .read_frame(deadline)
                .map_err(|e| self.connect_error(e))?;
            match frame.tag {
                b'W' => break,
                b'E' => {
                    let (why, fatal) = error_fields(&frame.body);
                    // The query failed: drain to ReadyForQuery so the session stays usable.
                    if !fatal {
                        let _ = self.wait_ready(deadline);
                        return Err(self.query_error(why));
                    }
                    return Err(self.connect_error(why));
                }
                b'N' | b'S' => {}
                other => {
                    return Err(self.connect_error(format!(
                        "unexpected message {:?} in reply to START_REPLICATION",
                        char::from(other)
                    )));
                }
            }
        }
        self.streaming = true;
        self.confirmed = self.confirmed.max(start_lsn);
        self.last_received = Instant::now();
        self.last_status = Instant::now();
        Ok(())
    }

    /// The next change, or `None` when none came within `wait`. Keepalives are answered and
    /// status updates sent meanwhile; messages other than the [`Event`]s are skipped.
    pub fn next(&mut self, wait: Duration) -> Result<Option<Event>, DbError> {
        if !self.streaming {
            return Err(self.query_error("replication has not started".into()));
        }
        let deadline = Instant::now() + wait;
        loop {
            while let Some(frame) = self.take_frame().map_err(|e| self.connect_error(e))? {
                if let Some(event) = self.handle(frame)? {
                    return Ok(Some(event));
                }
            }
            let now = Instant::now();
            if now.duration_since(self.last_status) >= STATUS_INTERVAL {
                self.send_status(true)?;
            }
            if now.duration_since(self.last_received) >= SILENCE_LIMIT {
                return Err(self.connect_error(format!(
                    "no message from the server for {} s",
                    SILENCE_LIMIT.as_secs()
                )));
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = deadline
                .min(self.last_status + STATUS_INTERVAL)
                .min(self.last_received + SILENCE_LIMIT);
            self.fill(until.saturating_duration_since(now))
                .map_err(|e| self.connect_error(e))?;
        }
    }

    /// Tells the server that everything before `lsn` is dealt with (written, flushed and
    /// applied), so the slot may move on; later keepalives and status updates repeat it.
    /// A position before the last one confirmed is ignored.
    pub fn confirm(&mut self, lsn: u64) -> Result<(), DbError> {
        self.confirmed = self.confirmed.max(lsn);
        self.send_status(false)
    }

    /// Acts on one message of the stream.
    fn handle(&mut self, frame: Frame) -> Result<Option<Event>, DbError> {
        match frame.tag {
            b'd' => match frame.body.first() {
                Some(b'w') => {
                    let mut r = Reader::new(&frame.body[1..]);
                    let header = (|| Some((r.u64()?, r.u64()?, r.i64()?)))();
                    let Some((_start, end, _sent)) = header else {
                        return Err(self.connect_error("a short XLogData message".into()));
                    };
                    self.wal_end = self.wal_end.max(end);
                    decode(r.rest()).map_err(|e| self.connect_error(e))
                }
                Some(b'k') => {
                    let mut r = Reader::new(&frame.body[1..]);
                    let keepalive = (|| Some((r.u64()?, r.i64()?, r.u8()?)))();
                    let Some((end, _sent, reply)) = keepalive else {
                        return Err(self.connect_error("a short keepalive message".into()));
                    };
                    self.wal_end = self.wal_end.max(end);
                    if reply != 0 {
                        self.send_status(false)?;
                    }
                    Ok(None)
                }
                other => Err(self.connect_error(format!(
                    "unexpected replication message {:?}",
                    other.map(|&b| char::from(b))
                ))),
            },
            b'E' => {
                let (why, _) = error_fields(&frame.body);
                Err(self.connect_error(why))
            }
            b'N' => {
                let (why, _) = error_fields(&frame.body);
                log::warn!(target: "db", "PostgreSQL at {}: {why}", self.target);
                Ok(None)
            }
            b'S' => Ok(None),
            b'c' | b'C' | b'Z' => {
                self.streaming = false;
                Err(self.connect_error("the server ended the replication stream".into()))
            }
            other => Err(self.connect_error(format!(
                "unexpected message {:?} in the replication stream",
                char::from(other)
            ))),
        }
    }

    /// Sends a standby status update with the position last confirmed.
    fn send_status(&mut self, reply: bool) -> Result<(), DbError> {
        let message = status_update(self.confirmed, pg_now(), reply);
        self.write(&message).map_err(|e| self.connect_error(e))?;
        self.last_status = Instant::now();
        Ok(())
    }

    /// The session up to ReadyForQuery: startup, authentication, the server's kind.
    fn startup(&mut self, s: &Startup<'_>) -> Attempt<()> {
        let deadline = Instant::now() + super::CONNECT_TIMEOUT;
        let mut params: Vec<(&str, &str)> = vec![
            ("user", s.user),
            ("replication", "database"),
            ("application_name", s.application_name),
            ("client_encoding", "UTF8"),
            ("options", &s.options),
        ];
        if let Some(db) = s.dbname {
            params.push(("database", db));
        }
        self.send(|buf| frontend::startup_message(params.iter().copied(), buf))?;
        self.authenticate(s, deadline)?;
        let mut in_hot_standby = None;
        let mut read_only_default = false;
        loop {
            let frame = self.read_frame(deadline)?;
            match frame.tag {
                b'Z' => break,
                b'S' => {
                    let mut r = Reader::new(&frame.body);
                    if let (Some(name), Some(value)) = (r.cstr(), r.cstr()) {
                        match name {
                            "in_hot_standby" => in_hot_standby = Some(value == "on"),
                            "default_transaction_read_only" => read_only_default = value == "on",
                            _ => {}
                        }
                    }
                }
                b'E' => return Err(error_fields(&frame.body).0),
                b'K' | b'N' => {}
                other => {
                    return Err(format!(
                        "unexpected message {:?} after authentication",
                        char::from(other)
                    ));
                }
            }
        }
        if s.read_write {
            // As libpq: the server's report when it makes one (14+), else ask.
            let read_only = match in_hot_standby {
                Some(standby) => standby || read_only_default,
                None => self.query_value("SHOW transaction_read_only", deadline)? == "on",
            };
            if read_only {
                return Err("the server is read-only (a standby), not the primary".into());
            }
        }
        Ok(())
    }

    fn authenticate(&mut self, s: &Startup<'_>, deadline: Instant) -> Attempt<()> {
        let password = || {
            s.password
                .ok_or("the server wants a password and the URL has none")
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let frame = self.read_frame(deadline)?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(error_fields(&frame.body).0),
                b'N' => continue,
                other => {
                    return Err(format!(
                        "unexpected message {:?} during authentication",
                        char::from(other)
                    ));
                }
            }
            let mut r = Reader::new(&frame.body);
            let kind = r.u32().ok_or("a short authentication message")?;
            match kind {
                0 => return Ok(()),
                3 => {
                    let pw = password()?;
                    self.send(|buf| frontend::password_message(pw, buf))?;
                }
                5 => {
                    let pw = password()?;
                    let salt = r.take(4).ok_or("a short MD5 request")?;
                    let salt = [salt[0], salt[1], salt[2], salt[3]];
                    let hash = md5_hash(s.user.as_bytes(), pw, salt);
                    self.send(|buf| frontend::password_message(hash.as_bytes(), buf))?;
                }
                10 => {
                    let mut offered = Vec::new();
                    while let Some(m) = r.cstr().filter(|m| !m.is_empty()) {
                        offered.push(m.to_string());
                    }
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(format!(
                            "the server offers only SASL mechanisms we lack: {}",
                            offered.join(", ")
                        ));
                    }
                    let client = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    let first = client.message().to_vec();
                    self.send(|buf| frontend::sasl_initial_response(SCRAM_SHA_256, &first, buf))?;
                    scram = Some(client);
                }
                11 => {
                    let client = scram.as_mut().ok_or("SASLContinue before SASL began")?;
                    client
                        .update(r.rest())
                        .map_err(|e| format!("SCRAM authentication: {e}"))?;
                    let response = client.message().to_vec();
                    self.send(|buf| frontend::sasl_response(&response, buf))?;
                }
                12 => {
                    let client = scram.as_mut().ok_or("SASLFinal before SASL began")?;
                    client
                        .finish(r.rest())
                        .map_err(|e| format!("SCRAM authentication: {e}"))?;
                }
                other => {
                    return Err(format!(
                        "the server wants an authentication method we lack (code {other}): use \
                         a password (scram-sha-256, md5 or password) or trust"
                    ));
                }
            }
        }
    }

    /// A simple query's first column of the first row, as text (before streaming only).
    fn query_value(&mut self, sql: &str, deadline: Instant) -> Attempt<String> {
        self.send(|buf| frontend::query(sql, buf))?;
        let mut value = None;
        loop {
            let frame = self.read_frame(deadline)?;
            match frame.tag {
                b'D' if value.is_none() => {
                    let mut r = Reader::new(&frame.body);
                    let _columns = r.u16();
                    let len = r.u32().ok_or("a short data row")?;
                    let text = match len {
                        u32::MAX => String::new(),
                        n => String::from_utf8_lossy(r.take(n as usize).ok_or("a short row")?)
                            .into_owned(),
                    };
                    value = Some(text);
                }
                b'E' => {
                    let why = error_fields(&frame.body).0;
                    let _ = self.wait_ready(deadline);
                    return Err(why);
                }
                b'Z' => return value.ok_or_else(|| format!("{sql}: no row")),
                _ => {}
            }
        }
    }

    /// Reads up to ReadyForQuery.
    fn wait_ready(&mut self, deadline: Instant) -> Attempt<()> {
        while self.read_frame(deadline)?.tag != b'Z' {}
        Ok(())
    }

    /// The next whole message, waiting until `deadline`.
    fn read_frame(&mut self, deadline: Instant) -> Attempt<Frame> {
        loop {
            if let Some(frame) = self.take_frame()? {
                return Ok(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the server did not answer in time".into());
            }
            self.fill(left)?;
        }
    }

    /// A whole message from the bytes read, if there is one.
    fn take_frame(&mut self) -> Attempt<Option<Frame>> {
        let unread = &self.buf[self.taken..];
        let Some((tag, len)) = frame_header(unread)? else {
            return Ok(None);
        };
        let Some(body) = unread.get(5..1 + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.taken += 1 + len;
        if self.taken == self.buf.len() {
            self.buf.clear();
            self.taken = 0;
        }
        Ok(Some(Frame { tag, body }))
    }

    /// Reads what arrives within `timeout` into the buffer (nothing is lost on a timeout:
    /// partial messages stay in the buffer, partial TLS records in rustls).
    fn fill(&mut self, timeout: Duration) -> Attempt<()> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        // Messages taken are dropped from the front only now and then, not one by one.
        if self.taken > 0 && self.taken >= self.buf.len() / 2 {
            self.buf.drain(..self.taken);
            self.taken = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.last_received = Instant::now();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(io_reason(&e)),
            }
        }
    }

    /// Builds a message with `build` and sends it.
    fn send(&mut self, build: impl FnOnce(&mut BytesMut) -> io::Result<()>) -> Attempt<()> {
        let mut buf = BytesMut::new();
        build(&mut buf).map_err(|e| e.to_string())?;
        self.write(&buf)
    }

    fn write(&mut self, bytes: &[u8]) -> Attempt<()> {
        self.stream
            .set_write_timeout(WRITE_TIMEOUT)
            .map_err(|e| e.to_string())?;
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| io_reason(&e))
    }

    fn connect_error(&self, reason: String) -> DbError {
        DbError::Connect {
            target: self.target.clone(),
            reason,
        }
    }

    fn query_error(&self, reason: String) -> DbError {
        DbError::Query {
            target: self.target.clone(),
            reason,
        }
    }
}

impl Drop for ReplicationConnection {
    /// Ends the session, best effort. Terminate alone, even while streaming: the walsender
    /// exits quietly on it, where a CopyDone first has it answer a peer already gone and log
    /// "connection to client lost".
    fn drop(&mut self) {
        let mut buf = BytesMut::new();
        frontend::terminate(&mut buf);
        let _ = self.stream.set_write_timeout(Duration::from_secs(1));
        let _ = self
            .stream
            .write_all(&buf)
            .and_then(|()| self.stream.flush());
        if let Stream::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
}

/// What the startup needs, the same for every host.
struct Startup<'a> {
    user: &'a str,
    password: Option<&'a [u8]>,
    dbname: Option<&'a str>,
    application_name: &'a str,
    options: String,
    read_write: bool,
}

/// The URL's own `options`, then TCP keepalives on the server's side (as [`super::Db`]
/// asks; the statement and lock timeouts are left out: they mean nothing to a stream).
fn options(cfg: &postgres::Config) -> String {
    let ours = format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} \
         -c tcp_user_timeout={}",
        super::KEEPALIVE_IDLE.as_secs(),
        super::KEEPALIVE_INTERVAL.as_secs(),
        super::KEEPALIVE_RETRIES,
        super::TCP_USER_TIMEOUT.as_millis(),
    );
    match cfg.get_options() {
        Some(own) if !own.trim().is_empty() => format!("{own} {ours}"),
        _ => ours,
    }
}

/// TCP to one host, then TLS as the mode says (an SSLRequest first; `prefer` goes on in plain
/// text only when the server has no TLS).
fn connect_tcp(
    host: &str,
    addr: impl ToSocketAddrs,
    mode: SslMode,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Attempt<Stream> {
    let addrs = addr.to_socket_addrs().map_err(|e| format!("{host}: {e}"))?;
    let mut last = format!("{host}: no address");
    let mut socket = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, super::CONNECT_TIMEOUT) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let mut socket = socket.ok_or(last)?;
    let _ = socket.set_nodelay(true);
    let Some(tls) = tls.filter(|_| mode != SslMode::Disable) else {
        return Ok(Stream::Tcp(socket));
    };
    socket
        .set_read_timeout(Some(super::CONNECT_TIMEOUT))
        .and_then(|()| socket.set_write_timeout(Some(super::CONNECT_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    socket.write_all(&request).map_err(|e| io_reason(&e))?;
    let mut answer = [0u8; 1];
    socket
        .read_exact(&mut answer)
        .map_err(|e| format!("no answer to the TLS request: {}", io_reason(&e)))?;
    match answer[0] {
        b'S' => {}
        b'N' if mode == SslMode::Prefer => return Ok(Stream::Tcp(socket)),
        b'N' => {
            return Err(format!(
                "the server does not accept TLS connections (sslmode={})",
                mode.as_str()
            ));
        }
        other => {
            return Err(format!(
                "unexpected answer {:?} to the TLS request",
                char::from(other)
            ));
        }
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: not a name for TLS: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::clone(tls), name)
        .map_err(|e| format!("TLS set-up: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut socket).map_err(|e| io_reason(&e))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(
        conn, socket,
    ))))
}

/// An I/O error in words (a TLS failure explained).
fn io_reason(e: &io::Error) -> String {
    crate::tls::explain(e).unwrap_or_else(|| e.to_string())
}

/// The type and length (counting itself) of the message at the start of `buf`, once its
/// five header bytes are there.
fn frame_header(buf: &[u8]) -> Attempt<Option<(u8, usize)>> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len < 4 {
        return Err(format!("a message with a bad length ({len})"));
    }
    if len > MAX_FRAME {
        return Err(format!(
            "a message of {len} bytes (more than {MAX_FRAME}): the stream is confused"
        ));
    }
    Ok(Some((header[0], len)))
}

/// `START_REPLICATION SLOT "slot" LOGICAL X/Y (proto_version '1', publication_names '"pub"')`.
fn start_command(slot: &str, start_lsn: u64, publication: &str) -> String {
    format!(
        "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {})",
        quote_ident(slot),
        format_lsn(start_lsn),
        quote_literal(&quote_ident(publication)),
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Microseconds since 2000-01-01 (PostgreSQL's clock in the protocol).
fn pg_now() -> i64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    micros.saturating_sub(PG_EPOCH_OFFSET_MICROS)
}

/// A standby status update in a CopyData message: `lsn` written, flushed and applied.
fn status_update(lsn: u64, now: i64, reply: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(39);
    m.push(b'd');
    m.extend_from_slice(&38u32.to_be_bytes());
    m.push(b'r');
    for _ in 0..3 {
        m.extend_from_slice(&lsn.to_be_bytes());
    }
    m.extend_from_slice(&now.to_be_bytes());
    m.push(u8::from(reply));
    m
}

/// The error (or notice) fields' words: `SEVERITY: message (SQLSTATE code)`, and whether the
/// session is over (FATAL or PANIC).
fn error_fields(body: &[u8]) -> (String, bool) {
    let mut r = Reader::new(body);
    let (mut severity, mut code, mut message, mut detail) = ("", "", "", "");
    while let Some(kind) = r.u8().filter(|&k| k != 0) {
        let Some(value) = r.cstr() else { break };
        match kind {
            b'V' => severity = value,
            b'S' if severity.is_empty() => severity = value,
            b'C' => code = value,
            b'M' => message = value,
            b'D' => detail = value,
            _ => {}
        }
    }
    let fatal = matches!(severity, "FATAL" | "PANIC");
    let mut text = format!("{severity}: {message}");
    if !detail.is_empty() {
        text.push_str(&format!(" ({detail})"));
    }
    if !code.is_empty() {
        text.push_str(&format!(" (SQLSTATE {code})"));
    }
    (text, fatal)
}

/// One pgoutput message (protocol version 1): an [`Event`], or `None` for those skipped
/// (relation, type, origin, update, logical message).
fn decode(m: &[u8]) -> Result<Option<Event>, String> {
    let Some((&kind, rest)) = m.split_first() else {
        return Err("an empty pgoutput message".into());
    };
    let mut r = Reader::new(rest);
    let short = || format!("a short pgoutput message {:?}", char::from(kind));
    let event = match kind {
        b'B' => {
            let (_final_lsn, _ts) = (r.u64().ok_or_else(short)?, r.i64().ok_or_else(short)?);
            Event::Begin {
                xid: r.u32().ok_or_else(short)?,
            }
        }
        b'C' => {
            let _flags = r.u8().ok_or_else(short)?;
            let commit_lsn = r.u64().ok_or_else(short)?;
            let end_lsn = r.u64().ok_or_else(short)?;
            let _ts = r.i64().ok_or_else(short)?;
            Event::Commit {
                commit_lsn,
                end_lsn,
            }
        }
        b'I' => {
            r.u32().ok_or_else(short)?;
            Event::Insert
        }
        b'D' => {
            r.u32().ok_or_else(short)?;
            Event::Delete
        }
        b'T' => {
            let n = r.u32().ok_or_else(short)?;
            let _options = r.u8().ok_or_else(short)?;
            r.take((n as usize).saturating_mul(4)).ok_or_else(short)?;
            Event::Truncate
        }
        b'R' | b'Y' | b'O' | b'U' | b'M' => return Ok(None),
        other => {
            return Err(format!(
                "unknown pgoutput message {:?} (protocol version 1)",
                char::from(other)
            ));
        }
    };
    Ok(Some(event))
}

/// Big-endian fields off a byte slice; `None` when too short.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self) -> Option<&'a str> {
        let end = self.bytes.iter().position(|&b| b == 0)?;
        let text = std::str::from_utf8(&self.bytes[..end]).ok()?;
        self.bytes = &self.bytes[end + 1..];
        Some(text)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin(final_lsn: u64, xid: u32) -> Vec<u8> {
        let mut m = vec![b'B'];
        m.extend_from_slice(&final_lsn.to_be_bytes());
        m.extend_from_slice(&123_456i64.to_be_bytes());
        m.extend_from_slice(&xid.to_be_bytes());
        m
    }

    fn commit(commit_lsn: u64, end_lsn: u64) -> Vec<u8> {
        let mut m = vec![b'C', 0];
        m.extend_from_slice(&commit_lsn.to_be_bytes());
        m.extend_from_slice(&end_lsn.to_be_bytes());
        m.extend_from_slice(&123_456i64.to_be_bytes());
        m
    }

    #[test]
    fn pgoutput_messages_decode() {
        assert_eq!(
            decode(&begin(0x1_0000_0010, 742)),
            Ok(Some(Event::Begin { xid: 742 }))
        );
        assert_eq!(
            decode(&commit(0x1_0000_0010, 0x1_0000_0040)),
            Ok(Some(Event::Commit {
                commit_lsn: 0x1_0000_0010,
                end_lsn: 0x1_0000_0040
            }))
        );
        // Insert: relation 16385, a new tuple of one column, text "7".
        let insert = [b'I', 0, 0, 0x40, 0x01, b'N', 0, 1, b't', 0, 0, 0, 1, b'7'];
        assert_eq!(decode(&insert), Ok(Some(Event::Insert)));
        // Delete by key: relation, 'K', a key tuple.
        let delete = [b'D', 0, 0, 0x40, 0x01, b'K', 0, 1, b't', 0, 0, 0, 1, b'7'];
        assert_eq!(decode(&delete), Ok(Some(Event::Delete)));
        // Truncate: two relations, options 1 (cascade).
        let truncate = [b'T', 0, 0, 0, 2, 1, 0, 0, 0x40, 0x01, 0, 0, 0x40, 0x02];
        assert_eq!(decode(&truncate), Ok(Some(Event::Truncate)));
        // Relation, type, origin, update and logical messages are skipped.
        for kind in [b'R', b'Y', b'O', b'U', b'M'] {
            assert_eq!(decode(&[kind, 0, 0, 0, 1]), Ok(None));
        }
    }

    #[test]
    fn short_empty_or_unknown_pgoutput_messages_are_errors() {
        let mut b = begin(1, 2);
        b.pop();
        assert!(decode(&b).unwrap_err().contains("short"));
        let mut c = commit(1, 2);
        c.truncate(10);
        assert!(decode(&c).is_err());
        assert!(decode(&[b'I', 0, 0]).is_err());
        // Truncate claiming more relations than it carries.
        assert!(decode(&[b'T', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1]).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&[b'S', 0, 0, 0, 1]).unwrap_err().contains("unknown"));
    }

    #[test]
    fn status_update_is_copydata_r_with_three_positions_time_and_reply() {
        let m = status_update(0x0000_0001_2345_6789, 0x0102_0304_0506_0708, false);
        let mut want = vec![b'd', 0, 0, 0, 38, b'r'];
        for _ in 0..3 {
            want.extend_from_slice(&[0, 0, 0, 1, 0x23, 0x45, 0x67, 0x89]);
        }
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0]);
        assert_eq!(m, want);
        assert_eq!(m.len(), 1 + 38);
        assert_eq!(status_update(0, 0, true).last(), Some(&1));
        // The clock is PostgreSQL's: after 2020-01-01, before 2100.
        let now = pg_now();
        assert!(
            now > 631_152_000_000_000 && now < 3_155_760_000_000_000,
            "{now}"
        );
    }

    #[test]
    fn frames_are_bounded_and_wait_for_their_header() {
        assert_eq!(frame_header(&[b'd', 0, 0]), Ok(None));
        assert_eq!(frame_header(&[b'd', 0, 0, 0, 9, 1]), Ok(Some((b'd', 9))));
        assert!(frame_header(&[b'd', 0, 0, 0, 3]).is_err());
        assert!(
            frame_header(&[b'd', 0x04, 0, 0, 1])
                .unwrap_err()
                .contains("confused")
        );
    }

    #[test]
    fn start_command_quotes_and_positions() {
        assert_eq!(
            start_command("inv_slot", 0x16_B374_D848, "inv \"pub\" 'x'"),
            "START_REPLICATION SLOT \"inv_slot\" LOGICAL 16/B374D848 (proto_version '1', \
             publication_names '\"inv \"\"pub\"\" ''x''\"')"
        );
        assert_eq!(format_lsn(0), "0/0");
    }

    #[test]
    fn error_responses_read_as_words() {
        let body = b"SERROR\0VERROR\0C55006\0Mreplication slot \"s\" is active for PID 7\0\0";
        let (text, fatal) = error_fields(body);
        assert_eq!(
            text,
            "ERROR: replication slot \"s\" is active for PID 7 (SQLSTATE 55006)"
        );
        assert!(!fatal);
        assert!(error_fields(b"SFATAL\0Mgone\0\0").1);
        // Truncated fields do not panic.
        let _ = error_fields(b"SFATAL");
    }
}
