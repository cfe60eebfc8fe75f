//! PostgreSQL over TLS with rustls, with libpq's `sslmode` meanings:
//!
//! | sslmode | encrypts | checks the chain | checks the host name |
//! |---|---|---|---|
//! | `disable` | no | – | – |
//! | `prefer` (default) | if the server offers TLS | no | no |
//! | `require` | yes | only when `sslrootcert` is given (then as `verify-ca`) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! A handshake that fails is an error in every mode, never a quiet retry in plain text;
//! `prefer` goes on in plain text only when the server says it has no TLS at all.

use crate::tls;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    #[default]
    Prefer,
    /// TLS, unverified unless a root certificate is given.
    Require,
    /// TLS with the server's chain checked against the roots.
    VerifyCa,
    /// TLS with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Every mode, as libpq names them.
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    /// Parses libpq's name (`allow` is taken as `prefer`: both try TLS where offered).
    pub fn parse(name: &str) -> Option<SslMode> {
        match name.trim().to_ascii_lowercase().as_str() {
            "disable" => Some(SslMode::Disable),
            "allow" | "prefer" => Some(SslMode::Prefer),
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    /// libpq's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// How the connection is secured: the mode and the files it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`: CA certificates (PEM); the system's roots when absent.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: a client certificate (PEM) to present.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl PgTls {
    /// The mode tokio-postgres runs: it knows only disable, prefer and require, and the checks
    /// of the stricter modes live in the rustls configuration.
    pub fn wire_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }

    /// The rustls configuration for this mode; `None` for `disable`.
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, String> {
        let provider = tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let root = self.root_cert.as_deref();
        let chain = match (self.mode, root) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::VerifyFull, _) => {
                let roots = tls::roots(root, false)?;
                return finish(builder.with_root_certificates(roots), self).map(Some);
            }
            (SslMode::Prefer, _) | (SslMode::Require, None) => None,
            (SslMode::Require | SslMode::VerifyCa, _) => {
                let roots = Arc::new(tls::roots(root, false)?);
                let chain = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("TLS set-up: {e}"))?;
                Some(chain)
            }
        };
        let lenient = Arc::new(Lenient { chain, provider });
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(lenient);
        finish(builder, self).map(Some)
    }
}

/// Adds the client certificate, when one is configured.
fn finish(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    tls: &PgTls,
) -> Result<rustls::ClientConfig, String> {
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(tls::certs(cert)?, tls::key(key)?)
            .map_err(|e| format!("the client certificate and key do not fit: {e}")),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The verifier of the modes below `verify-full`: with `chain`, the chain must lead to a
/// trusted root but the name in it need not be the host's (`verify-ca`, `require` with a
/// root); without, any certificate is accepted (`prefer`, `require`: libpq's meaning). The
/// handshake's signatures are checked either way, so the session is one TLS session with
/// whoever holds the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_by_libpq_name() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SslMode::parse("VERIFY-FULL"), Some(SslMode::VerifyFull));
        assert_eq!(SslMode::parse("allow"), Some(SslMode::Prefer));
        assert_eq!(SslMode::parse("on"), None);
    }

    #[test]
    fn disable_needs_no_tls_and_the_rest_build() {
        let off = PgTls {
            mode: SslMode::Disable,
            ..PgTls::default()
        };
        assert!(off.client_config().unwrap().is_none());
        assert!(PgTls::default().client_config().unwrap().is_some());
        let missing = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/root.crt".into()),
            ..PgTls::default()
        };
        assert!(
            missing
                .client_config()
                .unwrap_err()
                .contains("/nonexistent")
        );
    }
}
