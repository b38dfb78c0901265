//! The security settings, with Kafka's names: listeners, TLS files, SASL mechanisms,
//! re-authentication and the failed-authentication limits. Resolved into [`Resolved`] once
//! at startup.

use std::path::PathBuf;
use std::sync::Arc;

use super::acl::AuthorizerConfig;
use super::listeners::{self, Listener, Protocol};
use super::sasl::{FailureLimiter, MECHANISMS};
use super::tls::{ClientAuth, Tls, TlsFiles};
use crate::settings::{Apply, Show};

/// Security settings as given.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `listeners` (empty: one PLAINTEXT listener at `listen`).
    pub listeners: String,
    pub advertised_listeners: String,
    pub protocol_map: String,
    /// `inter.broker.listener.name` (empty: the first listener).
    pub inter_broker_listener: String,
    /// `sasl.enabled.mechanisms`
    pub sasl_mechanisms: Vec<String>,
    /// `ssl.keystore.location` (PEM: certificate chain and private key).
    pub keystore: String,
    /// `ssl.truststore.location` (PEM CA certificates for client certificates).
    pub truststore: String,
    pub client_auth: ClientAuth,
    /// `connections.max.reauth.ms` (0: sessions never expire).
    pub max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`
    pub failed_auth_delay_ms: u64,
    /// `authentication.failures.per.ip.per.minute` (0: no limit).
    pub failures_per_ip_per_minute: u32,
    /// `authorizer.class.name` (empty: no authorization).
    pub authorizer: String,
    /// `super.users`: `User:a;User:b`.
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found`
    pub allow_if_no_acl: bool,
    /// `http.ssl.enabled`: the HTTP port speaks TLS with the listeners' certificate.
    pub http_tls: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            listeners: String::new(),
            advertised_listeners: String::new(),
            protocol_map: listeners::DEFAULT_PROTOCOL_MAP.into(),
            inter_broker_listener: String::new(),
            sasl_mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            keystore: String::new(),
            truststore: String::new(),
            client_auth: ClientAuth::None,
            max_reauth_ms: 0,
            failed_auth_delay_ms: 100,
            failures_per_ip_per_minute: 20,
            authorizer: String::new(),
            super_users: String::new(),
            allow_if_no_acl: false,
            http_tls: false,
        }
    }
}

/// What the shards serve with: the listeners and what their connections need.
pub struct Resolved {
    pub listeners: Vec<Listener>,
    /// Index into `listeners` of the one other brokers and tools of the cluster use.
    pub inter_broker: usize,
    pub tls: Option<Arc<Tls>>,
    pub sasl_mechanisms: Vec<String>,
    pub max_reauth_ms: u64,
    pub failed_auth_delay_ms: u64,
    pub limiter: FailureLimiter,
    pub authz: AuthorizerConfig,
    /// The TLS configuration of the HTTP port, if it speaks TLS.
    pub http_tls: Option<Arc<Tls>>,
}

impl SecurityConfig {
    /// Resolves the settings; `listen` stands for the listeners when none are set.
    pub fn resolve(&self, listen: std::net::SocketAddr, shards: usize) -> Result<Resolved, String> {
        let given = if self.listeners.trim().is_empty() {
            format!("PLAINTEXT://{listen}")
        } else {
            self.listeners.clone()
        };
        let listeners = listeners::resolve(
            &given,
            &self.advertised_listeners,
            &self.protocol_map,
            shards,
        )?;
        let inter_broker = if self.inter_broker_listener.trim().is_empty() {
            0
        } else {
            let name = self.inter_broker_listener.trim().to_ascii_uppercase();
            listeners
                .iter()
                .position(|l| l.name == name)
                .ok_or_else(|| {
                    format!("inter.broker.listener.name {name} is not among listeners")
                })?
        };
        let needs_tls = listeners.iter().any(|l| l.protocol.tls()) || self.http_tls;
        let tls = if needs_tls {
            if self.keystore.trim().is_empty() {
                return Err(
                    "a TLS listener (SSL, SASL_SSL) or http.ssl.enabled needs ssl.keystore.location"
                        .into(),
                );
            }
            let files = TlsFiles {
                keystore: PathBuf::from(self.keystore.trim()),
                truststore: (!self.truststore.trim().is_empty())
                    .then(|| PathBuf::from(self.truststore.trim())),
                client_auth: self.client_auth,
            };
            Some(Arc::new(Tls::new(files).map_err(|e| e.to_string())?))
        } else {
            None
        };
        if listeners.iter().any(|l| l.protocol.sasl()) && self.sasl_mechanisms.is_empty() {
            return Err("a SASL listener needs sasl.enabled.mechanisms".into());
        }
        let http_tls = if self.http_tls { tls.clone() } else { None };
        Ok(Resolved {
            listeners,
            inter_broker,
            tls,
            sasl_mechanisms: self.sasl_mechanisms.clone(),
            max_reauth_ms: self.max_reauth_ms,
            failed_auth_delay_ms: self.failed_auth_delay_ms,
            limiter: FailureLimiter::new(self.failures_per_ip_per_minute),
            http_tls,
            authz: AuthorizerConfig {
                enabled: !self.authorizer.trim().is_empty(),
                super_users: self
                    .super_users
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                allow_if_no_acl: self.allow_if_no_acl,
            },
        })
    }
}

impl Resolved {
    pub fn inter_broker(&self) -> &Listener {
        &self.listeners[self.inter_broker]
    }

    pub fn protocol_of(&self, name: &str) -> Option<Protocol> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.protocol)
    }
}

/// Authorizer class names accepted (Kafka's; shardlog's ACLs serve them all).
const AUTHORIZERS: [&str; 3] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
    "shardlog",
];

fn u64_of(v: &str) -> Result<u64, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a number, got {v:?}"))
}

/// The security settings' keys (see [`crate::settings::KEYS`]).
pub const KEYS: &[(&str, &str, Apply, Show)] = &[
    (
        "listeners",
        "NAME://host:port,... (each listener takes one port per shard); empty: PLAINTEXT at listen",
        |s, v| {
            s.broker.security.listeners = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.listeners.clone(),
    ),
    (
        "advertised.listeners",
        "NAME://host:port,... clients are told to connect to (default: listeners)",
        |s, v| {
            s.broker.security.advertised_listeners = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.advertised_listeners.clone(),
    ),
    (
        "listener.security.protocol.map",
        "NAME:PROTOCOL,... (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)",
        |s, v| {
            s.broker.security.protocol_map = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.protocol_map.clone(),
    ),
    (
        "inter.broker.listener.name",
        "the listener other nodes reach this one on (default: the first)",
        |s, v| {
            s.broker.security.inter_broker_listener = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.inter_broker_listener.clone(),
    ),
    (
        "sasl.enabled.mechanisms",
        "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (comma-separated)",
        |s, v| {
            let mut out = Vec::new();
            for m in v.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                if !MECHANISMS.contains(&m) {
                    return Err(format!("unknown SASL mechanism {m:?} (known: {MECHANISMS:?})"));
                }
                out.push(m.to_string());
            }
            s.broker.security.sasl_mechanisms = out;
            Ok(())
        },
        |s| s.broker.security.sasl_mechanisms.join(","),
    ),
    (
        "ssl.keystore.type",
        "PEM (the only keystore type shardlog reads)",
        |_, v| match v.trim() {
            "PEM" => Ok(()),
            other => Err(format!("only PEM keystores are supported, not {other:?}")),
        },
        |_| "PEM".into(),
    ),
    (
        "ssl.keystore.location",
        "PEM file with the broker's certificate chain and private key (reloaded on SIGHUP)",
        |s, v| {
            s.broker.security.keystore = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.keystore.clone(),
    ),
    (
        "ssl.truststore.type",
        "PEM (the only truststore type shardlog reads)",
        |_, v| match v.trim() {
            "PEM" => Ok(()),
            other => Err(format!("only PEM truststores are supported, not {other:?}")),
        },
        |_| "PEM".into(),
    ),
    (
        "ssl.truststore.location",
        "PEM file with the CA certificates client certificates must chain to",
        |s, v| {
            s.broker.security.truststore = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.truststore.clone(),
    ),
    (
        "ssl.client.auth",
        "none, requested or required: client certificates on TLS listeners",
        |s, v| {
            s.broker.security.client_auth =
                ClientAuth::parse(v).ok_or("expected none, requested or required")?;
            Ok(())
        },
        |s| s.broker.security.client_auth.name().into(),
    ),
    (
        "connections.max.reauth.ms",
        "SASL sessions expire after this long and must re-authenticate (0: never)",
        |s, v| {
            s.broker.security.max_reauth_ms = u64_of(v)?;
            Ok(())
        },
        |s| s.broker.security.max_reauth_ms.to_string(),
    ),
    (
        "connection.failed.authentication.delay.ms",
        "a failed authentication is answered, then the connection closed after this delay",
        |s, v| {
            s.broker.security.failed_auth_delay_ms = u64_of(v)?;
            Ok(())
        },
        |s| s.broker.security.failed_auth_delay_ms.to_string(),
    ),
    (
        "authorizer.class.name",
        "turns ACL authorization on: Kafka's StandardAuthorizer or AclAuthorizer class name (shardlog's own ACLs either way); empty: off",
        |s, v| {
            let v = v.trim();
            if !v.is_empty() && !AUTHORIZERS.contains(&v) {
                return Err(format!("unknown authorizer {v:?} (known: {AUTHORIZERS:?})"));
            }
            s.broker.security.authorizer = v.to_string();
            Ok(())
        },
        |s| s.broker.security.authorizer.clone(),
    ),
    (
        "super.users",
        "principals allowed everything, separated by ; (User:admin;User:CN=ops)",
        |s, v| {
            for p in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                if !p.contains(':') {
                    return Err(format!("{p:?} is not TYPE:NAME (User:admin)"));
                }
            }
            s.broker.security.super_users = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.security.super_users.clone(),
    ),
    (
        "allow.everyone.if.no.acl.found",
        "with an authorizer: a resource no ACL names is open to everyone (default false)",
        |s, v| {
            s.broker.security.allow_if_no_acl = match v.trim() {
                "true" => true,
                "false" => false,
                _ => return Err("expected true or false".into()),
            };
            Ok(())
        },
        |s| s.broker.security.allow_if_no_acl.to_string(),
    ),
    (
        "http.ssl.enabled",
        "the HTTP port (metrics.listen: /metrics, /health, /v1/cluster) speaks TLS with ssl.keystore.location",
        |s, v| {
            s.broker.security.http_tls = match v.trim() {
                "true" => true,
                "false" => false,
                _ => return Err("expected true or false".into()),
            };
            Ok(())
        },
        |s| s.broker.security.http_tls.to_string(),
    ),
    (
        "authentication.failures.per.ip.per.minute",
        "past this many failed authentications from one address in a minute, its attempts are refused unchecked (0: no limit)",
        |s, v| {
            s.broker.security.failures_per_ip_per_minute =
                u32::try_from(u64_of(v)?).map_err(|_| "too large".to_string())?;
            Ok(())
        },
        |s| s.broker.security.failures_per_ip_per_minute.to_string(),
    ),
];
