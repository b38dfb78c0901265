//! Security: who a connection is (TLS, SASL), what it may do (ACLs), and what the cluster
//! stores to decide both (SCRAM credentials, ACL bindings).
//!
//! Invariant: a connection's principal is decided here and only here — by its listener's
//! protocol, its client certificate or its SASL exchange — before any request other than
//! ApiVersions and the SASL requests is served; passwords are never stored or logged, only
//! salted, iterated SCRAM credentials.
//!
//! What it must not know: logs, partitions, shards or how requests are served. The data
//! plane hands it bytes (handshakes, SASL tokens) and gets a principal or an error back; the
//! control plane stores its [`store::SecurityState`] like any other metadata.

pub mod acl;
pub mod listeners;
pub mod pinned;
pub mod plain;
pub mod sasl;
pub mod scram;
pub mod settings;
pub mod store;
pub mod tls;

use thiserror::Error;

/// Why an authentication failed. The client only ever learns "authentication failed";
/// the detail goes to the broker's log.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("{0}")]
    Failed(String),
    #[error("malformed exchange: {0}")]
    Malformed(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Kafka's principal (`KafkaPrincipal`): a type and a name, written `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    /// What PLAINTEXT connections (and SSL ones without a client certificate) are.
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}
