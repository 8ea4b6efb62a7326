//! Certificates for development and tests (issue 16): a cluster CA, one certificate per node and
//! a client certificate, made with `rcgen` and written as PEM files (`alpo certs init DIR`).
//!
//! The names follow `tls.rs`: a node's certificate carries `node-<id>.alpo` and `server.alpo`
//! and both extended key usages; a client's carries `client.alpo` and client authentication only.
//! Production clusters may use their own CA and tooling; only those names matter.
//!
//! Invariants: private keys are written with mode 0600; an existing file is never overwritten
//! (so a second `init` cannot replace a cluster's CA by accident).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use alpo_core::NodeId;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::Error;
use crate::tls::{SERVER_DNS_NAME, TlsPaths, node_dns_name};

/// The DNS name in the client certificate `init` makes.
pub const CLIENT_DNS_NAME: &str = "client.alpo";

/// How long a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From the start of this year for ten years.
    Years10,
    /// Expired long ago (2000–2001): for tests of the refusal.
    Expired,
}

/// A certificate authority that can issue node and client certificates.
pub struct Authority {
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// One issued certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// The files `init` wrote.
#[derive(Clone, Debug)]
pub struct InitFiles {
    /// The CA's certificate (give it to every node and client).
    pub ca: PathBuf,
    /// The CA's key (keep it safe; only needed to issue more certificates).
    pub ca_key: PathBuf,
    /// Per node: its id and TLS files.
    pub nodes: Vec<(NodeId, TlsPaths)>,
    /// The client's TLS files.
    pub client: TlsPaths,
}

fn cert_error(what: &str, error: &rcgen::Error) -> Error {
    Error::Config {
        field: "certificates",
        problem: format!("cannot make {what}: {error}"),
    }
}

fn current_year() -> i32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Good to the day for a validity that starts on January 1st.
    1970 + i32::try_from(seconds / 31_556_952).unwrap_or(0)
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let (from, to) = match validity {
        Validity::Years10 => (current_year(), current_year() + 10),
        Validity::Expired => (2000, 2001),
    };
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
}

/// The CA name `init` gives its CA.
pub const INIT_CA_NAME: &str = "alpo cluster CA";

impl Authority {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Authority, Error> {
        let key = KeyPair::generate().map_err(|e| cert_error("a CA key", &e))?;
        Authority::with_key(name, key)
    }

    /// The CA named `name` whose key is `key_pem` (as `init` wrote it in `ca-key.pem`, with
    /// [`INIT_CA_NAME`]), to issue more certificates: a new certificate for a node (rotation),
    /// or for a node added later. Certificates it issues verify against the original CA
    /// certificate (same name, same key).
    pub fn from_key_pem(name: &str, key_pem: &str) -> Result<Authority, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| cert_error("the CA key", &e))?;
        Authority::with_key(name, key)
    }

    fn with_key(name: &str, key: KeyPair) -> Result<Authority, Error> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_error("a CA", &e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, Validity::Years10);
        let cert = params
            .self_signed(&key)
            .map_err(|e| cert_error("a CA", &e))?;
        Ok(Authority { cert, key })
    }

    /// The CA's certificate, as PEM.
    #[must_use]
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's key, as PEM.
    #[must_use]
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for node `id`: names `node-<id>.alpo` and `server.alpo`, server and client
    /// authentication.
    pub fn issue_node(&self, id: NodeId, validity: Validity) -> Result<Issued, Error> {
        let names = vec![node_dns_name(id), SERVER_DNS_NAME.to_string()];
        let usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(&format!("alpo node {}", id.0), names, usages, validity)
    }

    /// A client certificate: names `client.alpo`, client authentication only.
    pub fn issue_client(&self, validity: Validity) -> Result<Issued, Error> {
        let names = vec![CLIENT_DNS_NAME.to_string()];
        let usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue("alpo client", names, usages, validity)
    }

    fn issue(
        &self,
        common_name: &str,
        names: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Issued, Error> {
        let mut params = CertificateParams::new(names).map_err(|e| cert_error(common_name, &e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        set_validity(&mut params, validity);
        let key = KeyPair::generate().map_err(|e| cert_error(common_name, &e))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| cert_error(common_name, &e))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Makes a CA, a certificate for each of `nodes` and a client certificate in `dir` (created if
/// missing): `ca.pem`, `ca-key.pem`, `node-<id>.pem`, `node-<id>-key.pem`, `client.pem`,
/// `client-key.pem`. Refuses to overwrite an existing file.
pub fn init(dir: &Path, nodes: &[NodeId]) -> Result<InitFiles, Error> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Tls {
        path: dir.to_path_buf(),
        problem: format!("cannot create the directory: {error}"),
    })?;
    let authority = Authority::new(INIT_CA_NAME)?;
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca-key.pem");
    write_new(&ca, &authority.cert_pem(), false)?;
    write_new(&ca_key, &authority.key_pem(), true)?;
    let mut node_files = Vec::new();
    for id in nodes {
        let issued = authority.issue_node(*id, Validity::Years10)?;
        let paths = write_issued(dir, &format!("node-{}", id.0), &ca, &issued)?;
        node_files.push((*id, paths));
    }
    let issued = authority.issue_client(Validity::Years10)?;
    let client = write_issued(dir, "client", &ca, &issued)?;
    Ok(InitFiles {
        ca,
        ca_key,
        nodes: node_files,
        client,
    })
}

/// Writes `issued` as `<stem>.pem` and `<stem>-key.pem` in `dir`.
pub fn write_issued(dir: &Path, stem: &str, ca: &Path, issued: &Issued) -> Result<TlsPaths, Error> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    write_new(&cert, &issued.cert_pem, false)?;
    write_new(&key, &issued.key_pem, true)?;
    Ok(TlsPaths {
        ca: ca.to_path_buf(),
        cert: Some(cert),
        key: Some(key),
    })
}

fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), Error> {
    let mode = if secret { 0o600 } else { 0o644 };
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    written.map_err(|error| Error::Tls {
        path: path.to_path_buf(),
        problem: format!("cannot write: {error}"),
    })
}
