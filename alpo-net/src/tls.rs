//! TLS with mutual authentication (issue 16): loading a node's or a client's certificates
//! ([`TlsConfig`]), the TLS handshake on both sides of a connection, and the names that tie a
//! certificate to a node id.
//!
//! Identity: a node's certificate names its node id as the DNS subject alternative name
//! `node-<id>.alpo` ([`node_dns_name`]) and carries [`SERVER_DNS_NAME`] (`server.alpo`), the name
//! a client checks when it connects to any node of the cluster; both extended key usages
//! (server and client authentication), since a node dials its peers. A client certificate has
//! client authentication only, so it can never pass as a node. All are signed by the cluster's
//! CA, the only root a node or a client trusts.
//!
//! Where it runs: the TLS handshake runs on the connection's short-lived handshake thread (the
//! dialler's writer thread, the listener's handshake thread, the blocking client's caller),
//! before the ALPO `Hello`; the ALPO handshake then runs inside TLS, and the connection with its
//! TLS state is handed to the inbox like any other ([`Stream`]).
//!
//! Invariants: on a TLS listener nothing but a complete TLS handshake with a certificate from the
//! cluster CA (mandatory on the peer port, and on the client port when
//! [`TlsConfig::require_client_certificate`] is set) reaches the ALPO handshake, so a refused
//! dialler never reaches the core; a peer's `Hello` is accepted only if its certificate names the
//! node id the `Hello` claims (`check_peer_identity`); the dialler checks that the listener's
//! certificate names the node it dialled. Every refusal is a named [`CloseReason`], logged with
//! the peer address and counted. A plain ALPO frame on a TLS port and a TLS hello on a plain port
//! are recognised from their first byte and refused by name.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alpo_core::NodeId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};

use crate::error::{CloseReason, Error, Rejection};
use crate::frame::MAGIC;
use crate::stream::Stream;

/// The DNS name every node certificate carries, checked by clients (who connect to any node).
pub const SERVER_DNS_NAME: &str = "server.alpo";

/// The first byte of a TLS record carrying a handshake message (a `ClientHello`).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The DNS subject alternative name that ties a certificate to node `id`: `node-<id>.alpo`.
#[must_use]
pub fn node_dns_name(id: NodeId) -> String {
    format!("node-{}.alpo", id.0)
}

/// Where a node's or a client's TLS files are (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// The cluster CA's certificate: the only root trusted.
    pub ca: PathBuf,
    /// This endpoint's certificate (chain); optional for a client on a port that does not
    /// require one.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
}

/// Loaded TLS settings: the trusted CA, this endpoint's certificate and key, and whether a
/// listener requires clients to present a certificate. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    require_client_certificate: bool,
    paths: TlsPaths,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("paths", &self.paths)
            .field(
                "require_client_certificate",
                &self.require_client_certificate,
            )
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Loads the CA, and the certificate and key if both are given. A node needs both (its
    /// listeners present it, and it presents it when dialling peers); a client needs them only
    /// for a listener that requires client certificates. Clients are not required to present one
    /// until [`TlsConfig::require_client_certificate`] says so.
    pub fn load(paths: &TlsPaths) -> Result<TlsConfig, Error> {
        let tls_error = |path: &Path, problem: String| Error::Tls {
            path: path.to_path_buf(),
            problem,
        };
        let mut roots = RootCertStore::empty();
        let ca_certs = read_certificates(&paths.ca)?;
        for cert in ca_certs {
            roots
                .add(cert)
                .map_err(|error| tls_error(&paths.ca, format!("not a usable CA: {error}")))?;
        }
        let identity = match (&paths.cert, &paths.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|error| tls_error(key, format!("no private key: {error}")))?;
                Some((chain, Arc::new(key_der)))
            }
            (None, None) => None,
            (Some(cert), None) => {
                return Err(tls_error(cert, "a certificate needs its key".into()));
            }
            (None, Some(key)) => {
                return Err(tls_error(key, "a key needs its certificate".into()));
            }
        };
        let config = TlsConfig {
            roots: Arc::new(roots),
            identity,
            require_client_certificate: false,
            paths: paths.clone(),
        };
        // Build every config once, so a bad key or certificate is refused at load, by path.
        if config.identity.is_some() {
            config.server_config(true)?;
        }
        config.client_config()?;
        Ok(config)
    }

    /// Whether a client listener with this configuration refuses clients without a
    /// certificate from the cluster CA. (The peer listener always requires one.)
    #[must_use]
    pub fn require_client_certificate(mut self, required: bool) -> TlsConfig {
        self.require_client_certificate = required;
        self
    }

    /// Whether clients must present a certificate.
    #[must_use]
    pub fn requires_client_certificate(&self) -> bool {
        self.require_client_certificate
    }

    /// The files this configuration was loaded from.
    #[must_use]
    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// The listener's side: presents this endpoint's certificate; `mandatory`: the other side
    /// must present one from the CA.
    pub(crate) fn server_config(&self, mandatory: bool) -> Result<Arc<ServerConfig>, Error> {
        let Some((chain, key)) = &self.identity else {
            return Err(Error::Config {
                field: "tls",
                problem: "a listener needs a certificate and a key".into(),
            });
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        );
        let verifier = if mandatory {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let cert_path = self.paths.cert.clone().unwrap_or_default();
        let verifier = verifier.build().map_err(|error| Error::Tls {
            path: self.paths.ca.clone(),
            problem: format!("cannot verify clients with this CA: {error}"),
        })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls {
                path: cert_path.clone(),
                problem: error.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|error| Error::Tls {
                path: cert_path,
                problem: format!("certificate and key do not go together: {error}"),
            })?;
        // Nothing is resumed, and a ticket would be bytes the dialler never reads.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// The dialler's side: trusts the CA only, presents this endpoint's certificate if it has
    /// one.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::Tls {
                path: self.paths.ca.clone(),
                problem: error.to_string(),
            })?
            .with_root_certificates(Arc::clone(&self.roots));
        let config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|error| Error::Tls {
                    path: self.paths.cert.clone().unwrap_or_default(),
                    problem: format!("certificate and key do not go together: {error}"),
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let tls_error = |problem: String| Error::Tls {
        path: path.to_path_buf(),
        problem,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|error| tls_error(format!("cannot read: {error}")))?
        .collect::<Result<_, _>>()
        .map_err(|error| tls_error(format!("not PEM certificates: {error}")))?;
    if certs.is_empty() {
        return Err(tls_error("holds no certificate".into()));
    }
    Ok(certs)
}

/// What the first byte of an inbound connection says it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstByte {
    /// An ALPO frame (its magic's first byte).
    Plain,
    /// A TLS handshake record.
    Tls,
    /// Anything else (left to whoever reads it to refuse).
    Other,
    /// The connection ended before a byte arrived.
    End,
}

/// Waits (up to the socket's read timeout) for the first byte and looks at it without taking
/// it.
pub(crate) fn peek_first_byte(tcp: &TcpStream) -> io::Result<FirstByte> {
    let mut byte = [0; 1];
    loop {
        match tcp.peek(&mut byte) {
            Ok(0) => return Ok(FirstByte::End),
            Ok(_) => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(match byte[0] {
        b if b == MAGIC[0] => FirstByte::Plain,
        TLS_HANDSHAKE_RECORD => FirstByte::Tls,
        _ => FirstByte::Other,
    })
}

/// Why a TLS handshake failed, as a rejection with a named reason.
fn rejection_of(error: &io::Error) -> Option<Rejection> {
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let detail = tls.to_string();
    Some(match tls {
        // A certificate whose issuer has our CA's name but whose signature does not verify
        // with our CA's key is not from our CA either.
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )
        | rustls::Error::AlertReceived(AlertDescription::UnknownCA) => {
            Rejection::CertificateUnknownCa { detail }
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )
        | rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            Rejection::CertificateExpired { detail }
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Rejection::CertificateWrongNode { detail },
        rustls::Error::NoCertificatesPresented
        | rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            Rejection::CertificateMissing
        }
        _ => Rejection::TlsHandshake { detail },
    })
}

/// The outcome of a TLS handshake that did not complete.
#[derive(Debug)]
pub(crate) enum HandshakeFailure {
    /// The other side broke a rule: refuse it by name.
    Rejected(Rejection),
    /// The connection ended or timed out (nothing to name).
    Io(Error),
}

/// The listener's side: runs the TLS handshake on `tcp` (blocking, within `timeout`). A
/// dialler speaking plain ALPO is recognised before any TLS byte is read
/// ([`Rejection::PlainOnTlsPort`]); the caller refuses it in plain framing.
pub(crate) fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
    timeout: Duration,
) -> Result<Stream, (TcpStream, HandshakeFailure)> {
    let io_failure = |operation, source| {
        HandshakeFailure::Io(Error::Io {
            peer,
            operation,
            source,
        })
    };
    if let Err(source) = tcp.set_read_timeout(Some(timeout)) {
        return Err((tcp, io_failure("set_read_timeout", source)));
    }
    match peek_first_byte(&tcp) {
        Ok(FirstByte::Plain) => {
            return Err((tcp, HandshakeFailure::Rejected(Rejection::PlainOnTlsPort)));
        }
        Ok(FirstByte::End) => {
            let closed = Error::Closed { peer, reason: None };
            return Err((tcp, HandshakeFailure::Io(closed)));
        }
        Ok(FirstByte::Tls | FirstByte::Other) => {}
        Err(source) => return Err((tcp, timeout_or_io(peer, timeout, source))),
    }
    let connection = match rustls::ServerConnection::new(Arc::clone(config)) {
        Ok(connection) => connection,
        Err(error) => {
            let source = io::Error::other(error);
            return Err((tcp, io_failure("tls", source)));
        }
    };
    handshake(tcp, peer, timeout, rustls::Connection::Server(connection))
}

/// The dialler's side: runs the TLS handshake on `tcp` (blocking, within `timeout`), checking
/// that the listener's certificate carries `server_name`. A listener that answers in plain ALPO
/// is recognised and reported as [`CloseReason::TlsOnPlainPort`].
pub(crate) fn connect(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &Arc<ClientConfig>,
    server_name: &str,
    timeout: Duration,
) -> Result<Stream, (TcpStream, HandshakeFailure)> {
    let name = match ServerName::try_from(server_name.to_string()) {
        Ok(name) => name,
        Err(error) => {
            let source = io::Error::new(io::ErrorKind::InvalidInput, error);
            let failure = HandshakeFailure::Io(Error::Io {
                peer,
                operation: "tls server name",
                source,
            });
            return Err((tcp, failure));
        }
    };
    let mut connection = match rustls::ClientConnection::new(Arc::clone(config), name) {
        Ok(connection) => connection,
        Err(error) => {
            let source = io::Error::other(error);
            let failure = HandshakeFailure::Io(Error::Io {
                peer,
                operation: "tls",
                source,
            });
            return Err((tcp, failure));
        }
    };
    let sent = tcp
        .set_read_timeout(Some(timeout))
        .and_then(|()| connection.write_tls(&mut &tcp).map(drop));
    if let Err(source) = sent {
        return Err((tcp, timeout_or_io(peer, timeout, source)));
    }
    match peek_first_byte(&tcp) {
        Ok(FirstByte::Plain) => {
            // A plain listener answers our hello with a plain `Close`; its reason is ours too.
            let closed = Error::Closed {
                peer,
                reason: Some(CloseReason::TlsOnPlainPort),
            };
            return Err((tcp, HandshakeFailure::Io(closed)));
        }
        Ok(FirstByte::End) => {
            let closed = Error::Closed { peer, reason: None };
            return Err((tcp, HandshakeFailure::Io(closed)));
        }
        Ok(FirstByte::Tls | FirstByte::Other) => {}
        Err(source) => return Err((tcp, timeout_or_io(peer, timeout, source))),
    }
    handshake(tcp, peer, timeout, rustls::Connection::Client(connection))
}

fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    mut connection: rustls::Connection,
) -> Result<Stream, (TcpStream, HandshakeFailure)> {
    let mut io = &tcp;
    while connection.is_handshaking() {
        if let Err(error) = connection.complete_io(&mut io) {
            let failure = match rejection_of(&error) {
                Some(rejection) => HandshakeFailure::Rejected(rejection),
                None => timeout_or_io(peer, timeout, error),
            };
            return Err((tcp, failure));
        }
    }
    // The client's last flight may still be queued (TLS 1.3 sends it after the server's).
    while connection.wants_write() {
        if let Err(source) = connection.write_tls(&mut io) {
            return Err((tcp, timeout_or_io(peer, timeout, source)));
        }
    }
    Ok(Stream::tls(tcp, connection))
}

fn timeout_or_io(peer: SocketAddr, timeout: Duration, source: io::Error) -> HandshakeFailure {
    match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            let waited_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            HandshakeFailure::Rejected(Rejection::HandshakeTimeout { waited_ms })
        }
        io::ErrorKind::UnexpectedEof => HandshakeFailure::Io(Error::Closed { peer, reason: None }),
        _ => HandshakeFailure::Io(Error::Io {
            peer,
            operation: "tls handshake",
            source,
        }),
    }
}

/// Checks that the certificate the dialler presented names node `claimed` (the sender of its
/// `Hello`); `Ok` on a plain connection (nothing to check).
pub(crate) fn check_peer_identity(stream: &Stream, claimed: NodeId) -> Result<(), Rejection> {
    if !stream.is_tls() {
        return Ok(());
    }
    let wrong = |detail: String| Rejection::CertificateWrongNode { detail };
    let Some(cert) = stream.peer_certificate() else {
        return Err(Rejection::CertificateMissing);
    };
    let name = node_dns_name(claimed);
    let parsed = webpki::EndEntityCert::try_from(&cert)
        .map_err(|error| wrong(format!("cannot read the certificate: {error}")))?;
    let server_name =
        ServerName::try_from(name.as_str()).map_err(|error| wrong(format!("{name}: {error}")))?;
    parsed
        .verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| wrong(format!("the certificate does not name {name}")))
}
