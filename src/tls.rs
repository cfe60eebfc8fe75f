//! What PostgreSQL and Redis over TLS share: the crypto provider, PEM files (checked at start
//! so a wrong path is a configuration error), trust roots, and a certificate failure told in
//! words ("unknown issuer", "name mismatch", "expired") instead of rustls' debug names.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, RootCertStore};
use std::path::Path;
use std::sync::Arc;

/// The one crypto provider (ring): asked for by name, so another crate enabling a second
/// provider can never make rustls pick at random or panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (a CA bundle, or a client certificate with its chain).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS #8, PKCS #1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // The error names the file, never its content.
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// The roots to trust: the CA file's certificates (`also_system`: beside the system's), or
/// the system's alone.
pub fn roots(ca_file: Option<&Path>, also_system: bool) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if ca_file.is_none() || also_system {
        roots.add_parsable_certificates(system_roots());
    }
    if let Some(path) = ca_file {
        for cert in certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{} holds an unusable CA certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates: the system has none; give a CA file".into());
    }
    Ok(roots)
}

/// The operating system's trusted CAs; unreadable ones are skipped.
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// Why a TLS connection failed, in words, when somewhere in `err`'s chain rustls said why.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = as_rustls(e) {
            return Some(words(tls));
        }
        next = e.source();
    }
    None
}

/// The rustls error `e` is, or that an I/O error wraps (the redis crate keeps its I/O error
/// behind an `Arc`, which is looked through too).
fn as_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(shared) = e.downcast_ref::<Shared>() {
        return as_rustls(shared.as_ref());
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    io.get_ref()?.downcast_ref::<rustls::Error>()
}

fn words(e: &rustls::Error) -> String {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the server's TLS certificate is not trusted (unknown issuer): give the CA that \
                 signed it (sslrootcert, REDIS_CA_CERT)"
                    .into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the server's TLS certificate does not name this host (name mismatch): {c}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the server's TLS certificate has expired: {c}")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the server's TLS certificate is not valid yet: {c}")
            }
            other => format!("the server's TLS certificate was refused: {other}"),
        },
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            "the server requires a client certificate (set one to present)".into()
        }
        rustls::Error::AlertReceived(
            alert @ (Alert::UnknownCA | Alert::BadCertificate | Alert::CertificateUnknown),
        ) => format!("the server refused our client certificate ({alert:?})"),
        other => format!("TLS failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_in_words() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(explain(&io).unwrap().contains("unknown issuer"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(explain(&name).unwrap().contains("name mismatch"));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(explain(&expired).unwrap().contains("expired"));
        let required = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert!(explain(&required).unwrap().contains("client certificate"));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(explain(&plain), None);
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let missing = Path::new("/nonexistent/ca.pem");
        assert!(certs(missing).unwrap_err().contains("/nonexistent/ca.pem"));
        let empty = std::env::temp_dir().join(format!("ib-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(certs(&empty).unwrap_err().contains("no PEM certificate"));
        assert!(key(&empty).is_err());
        let _ = std::fs::remove_file(&empty);
    }
}
