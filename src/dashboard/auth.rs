//! Who may use the dashboard. On loopback without a token anyone on this machine may, and
//! only the CSRF token (in the page, required on every POST) stops another site's page from
//! acting through the browser. With `INVENTORY_DASHBOARD_TOKEN`, every request needs it:
//! `Authorization: Bearer TOKEN` (scripts), or the session cookie the login form sets
//! (HttpOnly, SameSite=Strict; its value is derived from the token, never the token itself).

use crate::secret::Secret;
use crate::web::Request;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "ib_dashboard";

/// The checks every request goes through.
pub struct Auth {
    token: Option<Secret>,
    /// The session cookie's value: an HMAC of a fixed label under the token.
    session: String,
    /// The CSRF token of this process's pages.
    pub csrf: String,
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and act (acts still need the CSRF token, unless it came with a bearer token).
    Granted { bearer: bool },
    /// No (or a wrong) token.
    Denied,
}

impl Auth {
    /// Checks with `token`, if any; fresh random CSRF token.
    pub fn new(token: Option<Secret>) -> Auth {
        let session = token
            .as_ref()
            .map(|t| {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(t.expose().as_bytes())
                    .expect("HMAC takes a key of any length");
                mac.update(b"inventory-broadcast dashboard session v1");
                hex(&mac.finalize().into_bytes())
            })
            .unwrap_or_default();
        let csrf = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Auth {
            token,
            session,
            csrf,
        }
    }

    /// True when a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `request` carries the token (or no token is required).
    pub fn access(&self, request: &Request) -> Access {
        let Some(token) = &self.token else {
            return Access::Granted { bearer: false };
        };
        let bearer = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim(), token.expose()));
        if bearer {
            return Access::Granted { bearer: true };
        }
        match request.cookie(COOKIE) {
            Some(value) if same(value, &self.session) => Access::Granted { bearer: false },
            _ => Access::Denied,
        }
    }

    /// True when `given` (the login form's field) is the token.
    pub fn is_token(&self, given: &str) -> bool {
        self.token.as_ref().is_some_and(|t| same(given, t.expose()))
    }

    /// The `Set-Cookie` value that logs a browser in.
    pub fn session_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            self.session
        )
    }

    /// True when a POST may act: a bearer token came with it (a browser never adds one on
    /// its own), or its `X-CSRF-Token` is this process's.
    pub fn csrf_ok(&self, request: &Request, access: Access) -> bool {
        if access == (Access::Granted { bearer: true }) {
            return true;
        }
        request
            .header("x-csrf-token")
            .is_some_and(|given| same(given, &self.csrf))
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when the `Host` header names this machine: without a token, a page on another site
/// that rebinds its DNS name to 127.0.0.1 must not be served (its requests carry its name).
pub fn local_host(request: &Request) -> bool {
    let Some(host) = request.header("host") else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Request::default()
        }
    }

    #[test]
    fn a_token_is_needed_by_bearer_or_cookie_and_csrf_guards_cookies() {
        let auth = Auth::new(Some(Secret::new("0123456789abcdef")));
        assert_eq!(auth.access(&request(&[])), Access::Denied);
        let bearer = request(&[("authorization", "Bearer 0123456789abcdef")]);
        assert_eq!(auth.access(&bearer), Access::Granted { bearer: true });
        assert!(auth.csrf_ok(&bearer, auth.access(&bearer)));
        let wrong = request(&[("authorization", "Bearer 0123456789abcdeX")]);
        assert_eq!(auth.access(&wrong), Access::Denied);
        let cookie = auth.session_cookie();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(
            !cookie.contains("0123456789abcdef"),
            "the cookie is not the token"
        );
        let value = cookie.split(';').next().unwrap_or_default();
        let browser = request(&[("cookie", value)]);
        assert_eq!(auth.access(&browser), Access::Granted { bearer: false });
        assert!(!auth.csrf_ok(&browser, auth.access(&browser)));
        let with_csrf = request(&[("cookie", value), ("x-csrf-token", &auth.csrf)]);
        assert!(auth.csrf_ok(&with_csrf, auth.access(&with_csrf)));
    }

    #[test]
    fn without_a_token_only_local_host_names_are_served() {
        for ok in ["127.0.0.1:8080", "localhost", "[::1]:80", "LOCALHOST:1"] {
            assert!(local_host(&request(&[("host", ok)])), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.nip.io", ""] {
            assert!(!local_host(&request(&[("host", bad)])), "{bad}");
        }
        assert!(!local_host(&request(&[])));
    }
}
