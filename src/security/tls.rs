//! TLS for Kafka listeners (rustls, no OpenSSL): the server certificate chain and key from
//! PEM files, optional client certificates checked against a PEM trust store, reloaded on
//! SIGHUP without a restart.
//!
//! Invariant: a reload that fails (missing file, bad PEM, key not matching) keeps the
//! configuration in use and logs why; connections already open keep their session.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;

use super::Principal;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.trim() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// The TLS settings of the broker's TLS listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ssl.keystore.location`: PEM holding the certificate chain and its private key.
    pub keystore: PathBuf,
    /// `ssl.truststore.location`: PEM CA certificates client certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

fn pem_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Pem { what, path, source }
}

/// Builds a rustls server configuration from the files.
pub fn load(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(load_with_leaf(files)?.0)
}

/// [`load`], and the certificate the server presents (the chain's first).
fn load_with_leaf(
    files: &TlsFiles,
) -> Result<(Arc<ServerConfig>, CertificateDer<'static>), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.keystore)
        .map_err(pem_err("keystore", &files.keystore))?
        .collect::<Result<_, _>>()
        .map_err(pem_err("keystore", &files.keystore))?;
    if chain.is_empty() {
        return Err(TlsError::Config(format!(
            "keystore {} holds no certificate",
            files.keystore.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.keystore)
        .map_err(pem_err("private key in keystore", &files.keystore))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (files.client_auth, &files.truststore) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err(TlsError::Config(
            "ssl.client.auth needs ssl.truststore.location (the CAs client certificates chain to)"
                .into(),
        )),
        (mode, Some(ts)) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ts).map_err(pem_err("truststore", ts))? {
                roots
                    .add(c.map_err(pem_err("truststore", ts))?)
                    .map_err(|e| TlsError::Config(format!("truststore {}: {e}", ts.display())))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if mode == ClientAuth::Requested {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder
                .with_client_cert_verifier(v.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    let leaf = chain[0].clone();
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("keystore {}: {e}", files.keystore.display())))?;
    cfg.alpn_protocols.clear();
    Ok((Arc::new(cfg), leaf))
}

/// The configuration in use, replaced by [`Tls::reload`].
pub struct Tls {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, CertificateDer<'static>)>,
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Tls, TlsError> {
        let cfg = load_with_leaf(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(cfg),
        })
    }

    fn current(&self) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The configuration new connections use (read once per accepted connection).
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current().0
    }

    /// The certificate the listeners present now.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.current().1
    }

    /// Whether TLS clients must present a certificate.
    pub fn client_auth(&self) -> ClientAuth {
        self.files.client_auth
    }

    /// Reads the files again; keeps the old configuration if they do not load.
    pub fn reload(&self) -> Result<(), TlsError> {
        let cfg = load_with_leaf(&self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = cfg,
            Err(poisoned) => *poisoned.into_inner() = cfg,
        }
        Ok(())
    }
}

/// The principal of a verified client certificate: `User:` and its subject as RFC 2253
/// writes it (`CN=alice,OU=eng,O=Example`), as Kafka's default SSL principal builder does.
pub fn principal_of(cert: &CertificateDer<'_>) -> Option<Principal> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in c.subject().iter_rdn() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = x509_parser::objects::oid2abbrev(a.attr_type(), registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().map(escape).unwrap_or_default();
                format!("{key}={value}")
            })
            .collect();
        rdns.push(attrs.join("+"));
    }
    rdns.reverse();
    Some(Principal::user(rdns.join(",")))
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, ch) in v.chars().enumerate() {
        let edge =
            (i == 0 && (ch == ' ' || ch == '#')) || (i + 1 == v.chars().count() && ch == ' ');
        if matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || edge {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    #[test]
    fn a_client_certificate_subject_is_the_principal_in_rfc2253_order() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CountryName, "NL");
        p.distinguished_name
            .push(DnType::OrganizationName, "Example, Inc");
        p.distinguished_name.push(DnType::CommonName, "bob");
        let cert = p.self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        // What OpenSSL (as Java's X500Principal) writes in RFC 2253 form.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        let subject = String::from_utf8_lossy(&out.stdout);
        let subject = subject.trim().trim_start_matches("subject=");
        assert!(
            subject.contains("CN=bob") && subject.contains("Example\\, Inc"),
            "{subject}"
        );
        assert_eq!(
            principal_of(&der).unwrap().to_string(),
            format!("User:{subject}")
        );
        assert!(principal_of(&CertificateDer::from(vec![1u8, 2, 3])).is_none());
    }
}
