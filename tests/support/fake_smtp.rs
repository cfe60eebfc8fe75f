//! An SMTP server on 127.0.0.1 that speaks just enough (EHLO/HELO, MAIL FROM, RCPT TO, DATA,
//! RSET, NOOP, QUIT; no TLS, no AUTH) to receive what `MAIL_ENCRYPTION=null` sends.

use super::DEADLINE;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed, CRLF line ends.
    pub data: String,
}

type Shared = Arc<(Mutex<Vec<Mail>>, Condvar)>;

pub struct FakeSmtp {
    pub port: u16,
    mails: Shared,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FakeSmtp {
    pub fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        let mails: Shared = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (Arc::clone(&mails), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let _ = session(stream, &m);
                });
            }
        });
        FakeSmtp {
            port,
            mails,
            stop,
            accept: Some(accept),
        }
    }

    /// Waits until at least `n` messages arrived; panics at the deadline.
    pub fn wait_mails(&self, n: usize) -> Vec<Mail> {
        let end = Instant::now() + DEADLINE;
        let (lock, arrived) = &*self.mails;
        let mut mails = lock.lock().unwrap();
        while mails.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "fake SMTP: {} of {n} messages",
                mails.len()
            );
            mails = arrived.wait_timeout(mails, left).unwrap().0;
        }
        mails.clone()
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// `<a@b>` with optional parameters after it → `a@b`.
fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_string()
}

fn session(stream: TcpStream, mails: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.flush()
    };
    reply("220 fake-smtp ESMTP ready\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            reply("250-fake-smtp\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("HELO") {
            reply("250 fake-smtp\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line[10..]);
            to.clear();
            reply("250 2.1.0 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line[8..]));
            reply("250 2.1.5 OK\r\n")?;
        } else if upper == "DATA" {
            reply("354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            let (lock, arrived) = &**mails;
            lock.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            arrived.notify_all();
            reply("250 2.0.0 OK queued\r\n")?;
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            reply("250 OK\r\n")?;
        } else if upper == "NOOP" {
            reply("250 OK\r\n")?;
        } else if upper == "QUIT" {
            reply("221 Bye\r\n")?;
            return Ok(());
        } else {
            reply("502 5.5.2 Command not implemented\r\n")?;
        }
    }
}
