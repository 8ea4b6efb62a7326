//! TLS settings of a node (issue 16): the `[tls]` table of its configuration, turned into the
//! transport's [`TlsConfig`]. The transport (alpo-net `tls.rs`) does the handshakes and the
//! checks; this module only names the files and the client-certificate policy.
//!
//! ```toml
//! [tls]                              # optional; without it both ports speak plain TCP
//! ca = "/etc/alpo/ca.pem"            # the cluster CA: the only root trusted, on both ports
//! cert = "/etc/alpo/node-1.pem"      # names node-1.alpo and server.alpo
//! key = "/etc/alpo/node-1-key.pem"
//! require_client_cert = true         # the default: clients must present a CA certificate
//! ```
//!
//! Invariant: with `[tls]`, both listeners speak TLS only and every peer connection (both ways)
//! is mutually authenticated; a node's files are read at start, so a node picks up a new
//! certificate when it restarts (docs/operations.md, TLS).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use alpo_net::certs;
pub use alpo_net::tls::{SERVER_DNS_NAME, node_dns_name};
pub use alpo_net::{TlsConfig, TlsPaths};

use crate::error::Error;

/// The `[tls]` table of a node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster CA's certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM); it must name `node-<id>.alpo` and `server.alpo`.
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// Whether clients must present a certificate from the CA (default: yes).
    #[serde(default = "required")]
    pub require_client_cert: bool,
}

fn required() -> bool {
    true
}

impl TlsSettings {
    /// Reads the files; errors name the file and the problem.
    pub fn load(&self) -> Result<TlsConfig, Error> {
        let paths = TlsPaths {
            ca: self.ca.clone(),
            cert: Some(self.cert.clone()),
            key: Some(self.key.clone()),
        };
        Ok(TlsConfig::load(&paths)?.require_client_certificate(self.require_client_cert))
    }
}
