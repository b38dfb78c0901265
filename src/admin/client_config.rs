//! Kafka client properties for the admin commands (`--command-config client.properties`, as
//! Kafka's tools take it): `security.protocol`, `sasl.mechanism` with `sasl.jaas.config`
//! (or librdkafka's `sasl.mechanisms`, `sasl.username`, `sasl.password`), and PEM files for
//! TLS (`ssl.truststore.location` or `ssl.ca.location`; a client certificate from
//! `ssl.keystore.location`, or `ssl.certificate.location` with `ssl.key.location`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::client::Client;
use crate::security::listeners::Protocol;
use crate::security::scram::{Mechanism, ScramClient};

#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Login>,
}

#[derive(Clone)]
pub struct Login {
    pub mechanism: String,
    pub user: String,
    pub password: String,
}

/// `key=value` lines; `#` and `!` start comments.
fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('=').or_else(|| l.split_once(':')))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `name="value"` out of a JAAS line.
fn jaas(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = line[at..].strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

impl ClientSecurity {
    pub fn load(path: &Path) -> Result<ClientSecurity> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let p = properties(&text);
        let protocol = p
            .get("security.protocol")
            .map(|v| Protocol::parse(v).with_context(|| format!("unknown security.protocol {v:?}")))
            .transpose()?
            .unwrap_or(Protocol::Plaintext);
        let tls = if protocol.tls() {
            let ca = p
                .get("ssl.truststore.location")
                .or_else(|| p.get("ssl.ca.location"))
                .context(
                    "a TLS connection needs ssl.truststore.location (PEM) or ssl.ca.location",
                )?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca}"))? {
                roots.add(c.with_context(|| format!("reading {ca}"))?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
            let cert_key = match (
                p.get("ssl.keystore.location"),
                p.get("ssl.certificate.location"),
                p.get("ssl.key.location"),
            ) {
                (Some(ks), _, _) => Some((ks.clone(), ks.clone())),
                (None, Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => None,
            };
            let cfg = match cert_key {
                None => builder.with_no_client_auth(),
                Some((c, k)) => {
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c)
                        .with_context(|| format!("reading {c}"))?
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("reading {c}"))?;
                    let key = PrivateKeyDer::from_pem_file(&k)
                        .with_context(|| format!("reading the key in {k}"))?;
                    builder.with_client_auth_cert(chain, key)?
                }
            };
            Some(Arc::new(cfg))
        } else {
            None
        };
        let sasl = if protocol.sasl() {
            let mechanism = p
                .get("sasl.mechanism")
                .or_else(|| p.get("sasl.mechanisms"))
                .cloned()
                .unwrap_or_else(|| "GSSAPI".into());
            let jaas_line = p.get("sasl.jaas.config").cloned().unwrap_or_default();
            let user = p
                .get("sasl.username")
                .cloned()
                .or_else(|| jaas(&jaas_line, "username"))
                .context("SASL needs sasl.username or a sasl.jaas.config with username=\"...\"")?;
            let password = p
                .get("sasl.password")
                .cloned()
                .or_else(|| jaas(&jaas_line, "password"))
                .context("SASL needs sasl.password or a sasl.jaas.config with password=\"...\"")?;
            if mechanism != "PLAIN" && Mechanism::from_name(&mechanism).is_none() {
                bail!("unsupported sasl.mechanism {mechanism:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)");
            }
            Some(Login {
                mechanism,
                user,
                password,
            })
        } else {
            None
        };
        Ok(ClientSecurity { tls, sasl })
    }
}

impl Login {
    /// SaslHandshake v1 and SaslAuthenticate v2 on a fresh connection.
    pub fn authenticate(&self, c: &mut Client) -> Result<()> {
        let r = c.call(
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(self.mechanism.clone())),
            1,
        )?;
        if r.error_code != 0 {
            bail!(
                "the broker does not take {} (error {})",
                self.mechanism,
                r.error_code
            );
        }
        let mut step = |token: Vec<u8>| -> Result<Bytes> {
            let r = c.call(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
                2,
            )?;
            if r.error_code != 0 {
                bail!(
                    "{} (error {})",
                    r.error_message.as_deref().unwrap_or("refused"),
                    r.error_code
                );
            }
            Ok(r.auth_bytes)
        };
        match Mechanism::from_name(&self.mechanism) {
            None => {
                step(format!("\0{}\0{}", self.user, self.password).into_bytes())?;
            }
            Some(m) => {
                let (mut client, first) = ScramClient::start(m, &self.user);
                let server_first = step(first)?;
                let last = client.finish(&server_first, &self.password)?;
                let server_final = step(last)?;
                client.verify(&server_final)?;
            }
        }
        Ok(())
    }
}
