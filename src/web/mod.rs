//! The small blocking HTTP/1.1 server code the metrics endpoint and the dashboard share: read
//! one bounded request, write one response, close. No async runtime, no keep-alive: each
//! exchange is one short connection with a deadline, so a stuck client holds nothing long.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A request's whole exchange must fit in this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// One request, with its head parsed and its body (if any) read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query, percent-decoded.
    pub path: String,
    /// The query's pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body (bounded by the caller's limit).
    pub body: Vec<u8>,
}

impl Request {
    /// Reads a request from `stream`: the head up to [`MAX_HEAD`], then a body of up to
    /// `max_body` bytes as `Content-Length` says. Errors for a malformed or oversized request.
    pub fn read(stream: &mut TcpStream, max_body: usize) -> std::io::Result<Request> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut data = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        let end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if data.len() >= MAX_HEAD {
                return Err(invalid("request head too long"));
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(invalid("connection closed before the request ended"));
            }
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut request = Request::parse_head(&head)?;
        let length: usize = match request.header("content-length") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| invalid("bad Content-Length"))?,
            None => 0,
        };
        if length > max_body {
            return Err(invalid("request body too large"));
        }
        let mut body = data[end + 4..].to_vec();
        while body.len() < length {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(invalid("connection closed before the body ended"));
            }
            body.extend_from_slice(&buf[..n]);
        }
        body.truncate(length);
        request.body = body;
        Ok(request)
    }

    /// Parses a request line and headers.
    pub fn parse_head(head: &str) -> std::io::Result<Request> {
        let mut lines = head.split("\r\n");
        let mut words = lines.next().unwrap_or("").split(' ');
        let (method, target) = match (words.next(), words.next()) {
            (Some(m), Some(t)) if !m.is_empty() && t.starts_with('/') => (m, t),
            _ => return Err(invalid("bad request line")),
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Request {
            method: method.to_string(),
            path: decode(path),
            query: url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            headers,
            body: Vec::new(),
        })
    }

    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`, if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The cookie `name`, if sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    /// 200, 404, …
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// Plain text.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response and closes the exchange; `head_only` for `HEAD`.
    pub fn write(&self, stream: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            // A value from a program bug must not split the head.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        stream.write_all(&bytes)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let r = Request::parse_head(
            "POST /api/failed/a%20b/retry?queue=x%2Cy&z HTTP/1.1\r\nHost: h\r\n\
             Cookie: a=1; ib_session=abc\r\nX-CSRF-Token: t",
        )
        .expect("parses");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/failed/a b/retry");
        assert_eq!(r.param("queue"), Some("x,y"));
        assert_eq!(r.header("x-csrf-token"), Some("t"));
        assert_eq!(r.cookie("ib_session"), Some("abc"));
        assert_eq!(r.cookie("b"), None);
        assert!(Request::parse_head("GARBAGE").is_err());
        assert!(Request::parse_head("GET http://evil/ HTTP/1.1").is_err());
    }
}
