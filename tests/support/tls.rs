//! A throwaway PKI for TLS tests: a test CA, server and client certificates it signed, and an
//! unrelated CA, written as PEM files into a temp dir that is removed on drop. Made with `rcgen`
//! (pure Rust), so the tests need no `openssl` program and no network.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The common name of [`TestPki::client`]: PostgreSQL's `cert` and `clientcert=verify-full`
/// match it against the role name, so a role of this name can log in with it.
pub const CLIENT_CN: &str = "inventory";

/// The only name in [`TestPki::other_host`]: a certificate the CA signed for another host, for
/// "the chain is fine but the name is wrong" (verify-ca passes, verify-full fails).
pub const OTHER_HOST: &str = "other.example";

/// How long the valid certificates last. Long enough for any test run, short enough that
/// nothing mistakes them for real ones.
const VALIDITY: Duration = Duration::days(30);

/// A certificate and its private key as PEM files (key mode 0600).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// The certificate's PEM text.
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("read certificate PEM")
    }

    /// The private key's PEM text (PKCS#8, ECDSA P-256).
    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).expect("read key PEM")
    }

    /// Copies both files into `dir` as `{stem}.crt` and `{stem}.key` (the key mode 0600), so a
    /// server owns copies that outlive this PKI and can be chowned to its user.
    pub fn copy_to(&self, dir: &Path, stem: &str) -> CertFiles {
        let copy = CertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        write_file(&copy.cert, self.cert_pem().as_bytes(), 0o644);
        write_file(&copy.key, self.key_pem().as_bytes(), 0o600);
        copy
    }
}

/// The test PKI. Every certificate is ECDSA P-256 and, except [`TestPki::expired`], valid from a
/// day ago for [`VALIDITY`] (the day back absorbs clock skew).
pub struct TestPki {
    pub dir: PathBuf,
    /// The test CA (`ca.crt`, `ca.key`): what clients pass as sslrootcert / REDIS_CA_CERT.
    pub ca: CertFiles,
    /// Server certificate for DNS `localhost` and IP `127.0.0.1`, signed by [`TestPki::ca`].
    pub server: CertFiles,
    /// Server certificate for DNS [`OTHER_HOST`] only (no IP), signed by [`TestPki::ca`].
    pub other_host: CertFiles,
    /// Server certificate for `localhost` and `127.0.0.1`, signed by [`TestPki::ca`], that
    /// expired yesterday.
    pub expired: CertFiles,
    /// Client certificate with CN [`CLIENT_CN`] (clientAuth), signed by [`TestPki::ca`].
    pub client: CertFiles,
    /// A second CA that signed nothing here: trusting it instead of `ca` is the "wrong CA" case.
    pub other_ca: CertFiles,
    /// Client certificate with CN [`CLIENT_CN`] signed by [`TestPki::other_ca`]: a client
    /// certificate the servers must refuse.
    pub other_client: CertFiles,
}

impl TestPki {
    /// Creates the CA and certificates in a new temp dir (mode 0700).
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(format!("ib-pki-{}", super::tag()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("create the PKI dir");
        let now = OffsetDateTime::now_utc();
        let valid = (now - Duration::days(1), now + VALIDITY);

        let (ca, ca_issuer) = make_ca(&dir, "ca", "inventory-broadcast test CA", valid);
        let (other_ca, other_issuer) = make_ca(&dir, "other-ca", "unrelated test CA", valid);
        let local = ["localhost", "127.0.0.1"];
        let server = make_leaf(&dir, "server", &ca_issuer, Leaf::Server(&local), valid);
        let other_host = make_leaf(
            &dir,
            "other-host",
            &ca_issuer,
            Leaf::Server(&[OTHER_HOST]),
            valid,
        );
        let expired = make_leaf(
            &dir,
            "expired",
            &ca_issuer,
            Leaf::Server(&local),
            (now - Duration::days(2), now - Duration::days(1)),
        );
        let client = make_leaf(&dir, "client", &ca_issuer, Leaf::Client(CLIENT_CN), valid);
        let other_client = make_leaf(
            &dir,
            "other-client",
            &other_issuer,
            Leaf::Client(CLIENT_CN),
            valid,
        );
        TestPki {
            dir,
            ca,
            server,
            other_host,
            expired,
            client,
            other_ca,
            other_client,
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What an end-entity certificate is for.
enum Leaf<'a> {
    /// serverAuth, these subject alternative names (IP addresses become IP SANs).
    Server(&'a [&'a str]),
    /// clientAuth, this common name and no SAN.
    Client(&'a str),
}

fn make_ca(
    dir: &Path,
    stem: &str,
    name: &str,
    (from, until): (OffsetDateTime, OffsetDateTime),
) -> (CertFiles, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = from;
    params.not_after = until;
    let key = KeyPair::generate().expect("generate CA key");
    let cert = params.self_signed(&key).expect("self-sign the CA");
    let files = write_pair(dir, stem, &cert.pem(), &key.serialize_pem());
    (files, Issuer::new(params, key))
}

fn make_leaf(
    dir: &Path,
    stem: &str,
    issuer: &Issuer<'static, KeyPair>,
    leaf: Leaf<'_>,
    (from, until): (OffsetDateTime, OffsetDateTime),
) -> CertFiles {
    let (sans, cn, eku) = match leaf {
        Leaf::Server(names) => (
            names.iter().map(|n| n.to_string()).collect(),
            names[0],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        Leaf::Client(cn) => (Vec::new(), cn, ExtendedKeyUsagePurpose::ClientAuth),
    };
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    params.not_before = from;
    params.not_after = until;
    let key = KeyPair::generate().expect("generate leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign the leaf");
    write_pair(dir, stem, &cert.pem(), &key.serialize_pem())
}

fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    write_file(&files.cert, cert_pem.as_bytes(), 0o644);
    write_file(&files.key, key_pem.as_bytes(), 0o600);
    files
}

/// Writes a new file created with `mode`: a key is never readable by others, not even briefly
/// (PostgreSQL and libpq refuse a key file with group or world access).
fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a user or password in a
/// URL's userinfo (`p@ss:w/rd` → `p%40ss%3Aw%2Frd`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A password with every character that breaks naive URL or SQL handling: `@ / : # % ? &`,
/// quotes, a backslash and spaces.
pub const AWKWARD_PASSWORD: &str = r#"p@ss/w:rd #1%?&x=y 'q' "d" \z"#;
