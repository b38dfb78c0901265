//! A connection's identity on its listener: the principal of a PLAINTEXT or SSL connection
//! (its client certificate's subject, or ANONYMOUS), or, on a SASL listener, the SASL
//! exchange that must complete before anything but ApiVersions and the SASL requests is
//! served (KIP-43, KIP-152), and re-authentication before the session expires (KIP-368).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use super::errors;
use super::shard::Shard;
use crate::protocol::{self, SaslHandshakeRequest};
use crate::security::acl::{self, Operation, ResourceType};
use crate::security::listeners::Listener;
use crate::security::sasl::{Sasl, Step};
use crate::security::settings::Resolved;
use crate::security::store::SecurityState;
use crate::security::Principal;

/// What a connection may do with its next request.
pub enum Gate {
    Serve,
    /// Close the connection, for this reason (logged once).
    Close(&'static str),
}

pub struct Session {
    pub listener: Arc<Listener>,
    pub peer: SocketAddr,
    /// The client's address as ACLs name hosts.
    host: String,
    /// Authorization decisions of this connection, until the ACLs change.
    decisions: RefCell<Decisions>,
    /// `None` until a SASL exchange completes.
    pub principal: Option<Principal>,
    /// When a SASL session must have re-authenticated (`connections.max.reauth.ms`).
    expires: Option<Instant>,
    sasl: Sasl,
}

/// A failed exchange: answer with this message, wait, close.
pub struct Failed {
    pub response: SaslAuthenticateResponse,
}

impl Session {
    pub fn new(listener: Arc<Listener>, peer: SocketAddr, cert: Option<Principal>) -> Session {
        let principal = if listener.protocol.sasl() {
            None
        } else {
            Some(cert.unwrap_or_else(Principal::anonymous))
        };
        Session {
            listener,
            host: peer.ip().to_string(),
            peer,
            decisions: RefCell::new(Decisions::default()),
            principal,
            expires: None,
            sasl: Sasl::default(),
        }
    }

    /// Whether the next frame is a raw SASL token (after a v0 handshake), not a request.
    pub fn expects_raw_token(&self) -> bool {
        self.sasl.raw_tokens && self.sasl.in_progress()
    }

    pub fn gate(&self, key: i16) -> Gate {
        let sasl_request = matches!(key, protocol::SASL_HANDSHAKE | protocol::SASL_AUTHENTICATE);
        if key == protocol::API_VERSIONS || sasl_request {
            return Gate::Serve;
        }
        if self.principal.is_none() {
            return Gate::Close("request before SASL authentication");
        }
        if self.sasl.in_progress() {
            return Gate::Close("request in the middle of a SASL re-authentication");
        }
        if self.expires.is_some_and(|t| Instant::now() >= t) {
            return Gate::Close(
                "SASL session expired without re-authentication (connections.max.reauth.ms)",
            );
        }
        Gate::Serve
    }

    /// SaslHandshake; the response and whether the connection stays open.
    pub fn handshake(
        &mut self,
        sec: &Resolved,
        req: SaslHandshakeRequest,
        version: i16,
    ) -> (SaslHandshakeResponse, bool) {
        let mut resp = SaslHandshakeResponse::default();
        if !self.listener.protocol.sasl() {
            resp.error_code = errors::ILLEGAL_SASL_STATE;
            return (resp, true);
        }
        resp.mechanisms = sec
            .sasl_mechanisms
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        if self.sasl.in_progress() || (self.principal.is_some() && version == 0) {
            resp.error_code = errors::ILLEGAL_SASL_STATE;
            return (resp, false);
        }
        if !self
            .sasl
            .handshake(&req.mechanism, &sec.sasl_mechanisms, version)
        {
            warn!(peer = %self.peer, mechanism = %req.mechanism, "SASL mechanism not enabled; closing connection");
            resp.error_code = errors::UNSUPPORTED_SASL_MECHANISM;
            return (resp, false);
        }
        (resp, true)
    }

    /// One SASL token: the token to answer with, or the failure.
    pub fn authenticate(
        &mut self,
        shard: &Shard,
        token: &[u8],
    ) -> Result<SaslAuthenticateResponse, Failed> {
        let sec = &shard.security;
        let fail = |message: &str| {
            let mut r = SaslAuthenticateResponse::default();
            r.error_code = errors::SASL_AUTHENTICATION_FAILED;
            r.error_message = Some(StrBytes::from_string(message.to_string()));
            Failed { response: r }
        };
        if !self.listener.protocol.sasl() {
            let mut r = fail("SASL is not enabled on this listener");
            r.response.error_code = errors::ILLEGAL_SASL_STATE;
            return Err(r);
        }
        if !sec.limiter.allowed(self.peer.ip()) {
            warn!(peer = %self.peer, "SASL authentication refused: too many failures from this address (authentication.failures.per.ip.per.minute)");
            return Err(fail("Authentication failed: too many failed attempts from this address, try again later"));
        }
        let users = shard.catalog().security.clone();
        match self.sasl.step(token, &users) {
            Ok(Step::Continue(t)) => {
                let mut r = SaslAuthenticateResponse::default();
                r.auth_bytes = Bytes::from(t);
                Ok(r)
            }
            Ok(Step::Done(t, principal)) => {
                if let Some(old) = &self.principal {
                    if *old != principal {
                        warn!(peer = %self.peer, %old, new = %principal, "re-authentication as another principal; closing connection");
                        return Err(fail(
                            "Authentication failed: re-authentication must keep the principal",
                        ));
                    }
                } else {
                    info!(peer = %self.peer, %principal, listener = %self.listener.name, "SASL authenticated");
                }
                self.principal = Some(principal);
                let mut r = SaslAuthenticateResponse::default();
                r.auth_bytes = Bytes::from(t);
                if sec.max_reauth_ms > 0 {
                    self.expires = Some(Instant::now() + Duration::from_millis(sec.max_reauth_ms));
                    r.session_lifetime_ms = sec.max_reauth_ms as i64;
                }
                Ok(r)
            }
            Err(e) => {
                sec.limiter.failed(self.peer.ip());
                shard
                    .metrics
                    .auth_failures
                    .set(shard.metrics.auth_failures.get() + 1);
                warn!(peer = %self.peer, listener = %self.listener.name, "SASL authentication failed: {e}");
                Err(fail("Authentication failed: invalid credentials"))
            }
        }
    }
}

/// Decisions cached per connection: resource type → name → (operations decided, allowed),
/// bit `code` per operation; dropped when the security state changes or it grows large.
#[derive(Default)]
struct Decisions {
    state: Option<Arc<SecurityState>>,
    by_type: [HashMap<String, (u16, u16)>; 4],
    entries: usize,
}

/// Names one connection remembers decisions for before starting over.
const MAX_DECISIONS: usize = 4096;

fn type_index(rt: ResourceType) -> usize {
    match rt {
        ResourceType::Topic => 0,
        ResourceType::Group => 1,
        ResourceType::Cluster => 2,
        ResourceType::TransactionalId => 3,
    }
}

impl Session {
    /// Whether this connection's principal may do `op` on the resource (always, without an
    /// authorizer). Cached per connection: the produce and fetch path costs a hash lookup.
    pub fn may(&self, shard: &Shard, op: Operation, rt: ResourceType, name: &str) -> bool {
        let cfg = &shard.security.authz;
        if !cfg.enabled {
            return true;
        }
        let Some(principal) = &self.principal else {
            return false;
        };
        let cat = shard.catalog();
        let mut d = self.decisions.borrow_mut();
        if !d
            .state
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &cat.security))
            || d.entries > MAX_DECISIONS
        {
            *d = Decisions {
                state: Some(cat.security.clone()),
                ..Default::default()
            };
        }
        let bit = 1u16 << op.code();
        if let Some((decided, allowed)) = d.by_type[type_index(rt)].get(name) {
            if decided & bit != 0 {
                return allowed & bit != 0;
            }
        }
        let ok = acl::authorize(
            cfg,
            &cat.security.acls,
            &principal.to_string(),
            &self.host,
            op,
            rt,
            name,
        );
        d.entries += 1;
        let e = d.by_type[type_index(rt)]
            .entry(name.to_string())
            .or_insert((0, 0));
        e.0 |= bit;
        if ok {
            e.1 |= bit;
        }
        ok
    }

    /// Whether the principal may do `op` on some resource of type `rt` (not cached).
    pub fn may_any(&self, shard: &Shard, op: Operation, rt: ResourceType) -> bool {
        let cfg = &shard.security.authz;
        if !cfg.enabled {
            return true;
        }
        let Some(principal) = &self.principal else {
            return false;
        };
        let cat = shard.catalog();
        acl::allows_any(
            cfg,
            &cat.security.acls,
            &principal.to_string(),
            &self.host,
            op,
            rt,
        )
    }
}

/// A raw SASL token frame (after a v0 handshake): length prefix and bytes.
pub fn raw_token(token: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(4 + token.len());
    b.extend_from_slice(&(token.len() as u32).to_be_bytes());
    b.extend_from_slice(token);
    Bytes::from(b)
}
