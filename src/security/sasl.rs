//! One connection's SASL exchange (KIP-43, KIP-152): SaslHandshake picks a mechanism, then
//! tokens go back and forth (in SaslAuthenticate requests, or raw frames after a v0
//! handshake) until the server has a principal or refuses. Also the per-address limit on
//! failed authentications that slows password guessing.
//!
//! Invariant: a connection is authenticated only by a completed exchange of an enabled
//! mechanism; re-authentication (KIP-368) must name the same principal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::scram::{Mechanism, ScramServer};
use super::store::SecurityState;
use super::{plain, AuthError, Principal};

/// SASL mechanisms shardlog can serve.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

enum Exchange {
    Plain,
    Scram(Box<ScramServer>),
}

/// Where one connection's exchange stands.
#[derive(Default)]
pub struct Sasl {
    exchange: Option<Exchange>,
    /// After a v0 handshake the tokens come as raw frames without a Kafka header.
    pub raw_tokens: bool,
}

/// What a token brought.
pub enum Step {
    /// Send this token and wait for the next.
    Continue(Vec<u8>),
    /// Authenticated: send this last token (maybe empty).
    Done(Vec<u8>, Principal),
}

impl Sasl {
    /// SaslHandshake: chooses `mechanism` if it is enabled.
    pub fn handshake(&mut self, mechanism: &str, enabled: &[String], version: i16) -> bool {
        if !enabled.iter().any(|m| m == mechanism) {
            return false;
        }
        self.exchange = Some(match mechanism {
            "PLAIN" => Exchange::Plain,
            m => match Mechanism::from_name(m) {
                Some(m) => Exchange::Scram(Box::new(ScramServer::new(m))),
                None => return false,
            },
        });
        self.raw_tokens = version == 0;
        true
    }

    /// Whether a handshake chose a mechanism whose exchange is not over.
    pub fn in_progress(&self) -> bool {
        self.exchange.is_some()
    }

    /// Takes the client's next token.
    pub fn step(&mut self, token: &[u8], users: &SecurityState) -> Result<Step, AuthError> {
        let Some(exchange) = self.exchange.as_mut() else {
            return Err(AuthError::Malformed(
                "SaslAuthenticate before SaslHandshake".into(),
            ));
        };
        match exchange {
            Exchange::Plain => {
                self.exchange = None;
                let user = plain::authenticate(token, |u| users.credentials(u))?;
                Ok(Step::Done(Vec::new(), Principal::user(user)))
            }
            Exchange::Scram(s) => {
                let mech = s.mechanism();
                if s.client_first_pending() {
                    let first = s.client_first(token, |u| users.credential(u, mech));
                    if first.is_err() {
                        self.exchange = None;
                    }
                    return first.map(Step::Continue);
                }
                let done = s.client_final(token);
                self.exchange = None;
                let (last, user) = done?;
                Ok(Step::Done(last, Principal::user(user)))
            }
        }
    }
}

/// Failed authentications per client address: past `per_minute` in a minute, the address
/// is refused without a password check until the minute is over.
pub struct FailureLimiter {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses remembered at once (older windows are dropped first when full).
const MAX_ADDRESSES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

impl FailureLimiter {
    pub fn new(per_minute: u32) -> Self {
        FailureLimiter {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may try to authenticate now.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match seen.get(&ip) {
            Some((since, n)) => since.elapsed() >= WINDOW || *n < self.per_minute,
            None => true,
        }
    }

    /// Counts a failure of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        if seen.len() >= MAX_ADDRESSES && !seen.contains_key(&ip) {
            seen.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if seen.len() >= MAX_ADDRESSES {
                seen.clear();
            }
        }
        let e = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::Credential;
    use crate::security::store::SecurityChange;

    #[test]
    fn handshake_picks_only_enabled_mechanisms() {
        let enabled = vec!["SCRAM-SHA-512".to_string()];
        let mut s = Sasl::default();
        assert!(!s.handshake("PLAIN", &enabled, 1));
        assert!(!s.handshake("GSSAPI", &enabled, 1));
        assert!(s.handshake("SCRAM-SHA-512", &enabled, 1));
        assert!(!s.raw_tokens);
    }

    #[test]
    fn plain_through_the_exchange() {
        let mut users = SecurityState::default();
        users
            .apply(&SecurityChange::UpsertScram {
                user: "alice".into(),
                mechanism: Mechanism::Sha256,
                credential: Credential::from_password(Mechanism::Sha256, "pw", 4096),
            })
            .unwrap();
        let mut s = Sasl::default();
        assert!(s.handshake("PLAIN", &["PLAIN".to_string()], 1));
        match s.step(b"\0alice\0pw", &users) {
            Ok(Step::Done(_, p)) => assert_eq!(p.to_string(), "User:alice"),
            _ => panic!("not authenticated"),
        }
        assert!(
            s.step(b"\0alice\0pw", &users).is_err(),
            "one exchange per handshake"
        );
    }

    #[test]
    fn limiter_counts_per_address_and_window() {
        let l = FailureLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.allowed(a));
        l.failed(a);
        l.failed(a);
        assert!(!l.allowed(a));
        assert!(l.allowed(b));
    }
}
