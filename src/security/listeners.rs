//! Kafka's listener settings: `listeners=NAME://host:port,...`, `advertised.listeners`,
//! `listener.security.protocol.map` and `inter.broker.listener.name`. Each listener of a
//! broker with N shards takes N consecutive ports from its own (shard `i` on `port + i`).

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Protocol::Plaintext),
            "SSL" => Some(Protocol::Ssl),
            "SASL_PLAINTEXT" => Some(Protocol::SaslPlaintext),
            "SASL_SSL" => Some(Protocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// One listener, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    /// Where shard 0 binds; shard `i` binds `port + i`.
    pub bind: SocketAddr,
    /// What Metadata names for shard 0 (host, port); shard `i` is `port + i`.
    pub advertised_host: String,
    pub advertised_port: u16,
}

impl Listener {
    pub fn bind_for(&self, shard: usize) -> SocketAddr {
        let mut a = self.bind;
        a.set_port(self.bind.port() + shard as u16);
        a
    }

    pub fn advertised_for(&self, shard: usize) -> (String, u16) {
        (
            self.advertised_host.clone(),
            self.advertised_port.saturating_add(shard as u16),
        )
    }
}

pub const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Splits `NAME://host:port` (host may be empty, a name, an IPv4 or a bracketed IPv6).
fn split_endpoint(s: &str) -> Result<(String, String, u16), String> {
    let (name, rest) = s
        .trim()
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not NAME://host:port"))?;
    let name = name.trim().to_ascii_uppercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad listener name in {s:?}"));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in {s:?}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((name, host, port))
}

fn parse_map(map: &str) -> Result<Vec<(String, Protocol)>, String> {
    map.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (n, p) = e
                .split_once(':')
                .ok_or_else(|| format!("{e:?} is not NAME:PROTOCOL"))?;
            let p = Protocol::parse(p).ok_or_else(|| format!("unknown security protocol {p:?}"))?;
            Ok((n.trim().to_ascii_uppercase(), p))
        })
        .collect()
}

/// Resolves the listener settings. `shards` is how many consecutive ports each takes.
pub fn resolve(
    listeners: &str,
    advertised: &str,
    protocol_map: &str,
    shards: usize,
) -> Result<Vec<Listener>, String> {
    let map = parse_map(protocol_map)?;
    let mut out: Vec<Listener> = Vec::new();
    for entry in listeners.split(',').filter(|e| !e.trim().is_empty()) {
        let (name, host, port) = split_endpoint(entry)?;
        let protocol = map
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .ok_or_else(|| format!("listener {name} is not in listener.security.protocol.map"))?;
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener {name} is named twice"));
        }
        if port == 0 || usize::from(port) + shards.max(1) - 1 > usize::from(u16::MAX) {
            return Err(format!(
                "listener {name}: port {port} leaves no room for {shards} shard ports (port + shard index)"
            ));
        }
        let bind_host = if host.is_empty() {
            "0.0.0.0"
        } else {
            host.as_str()
        };
        let bind = (bind_host, port)
            .to_socket_addrs()
            .map_err(|e| format!("listener {name}: cannot resolve {bind_host:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("listener {name}: {bind_host:?} resolves to nothing"))?;
        out.push(Listener {
            name,
            protocol,
            bind,
            advertised_host: if host.is_empty() || bind.ip().is_unspecified() {
                local_hostname()
            } else {
                host
            },
            advertised_port: port,
        });
    }
    if out.is_empty() {
        return Err("no listeners".into());
    }
    for entry in advertised.split(',').filter(|e| !e.trim().is_empty()) {
        let (name, host, port) = split_endpoint(entry)?;
        let l = out
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| format!("advertised listener {name} is not among listeners"))?;
        if host.is_empty() || port == 0 {
            return Err(format!(
                "advertised listener {name} needs a host and a port"
            ));
        }
        l.advertised_host = host;
        l.advertised_port = port;
    }
    // Two listeners' shard port ranges must not overlap on one address.
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            let (a0, b0) = (usize::from(a.bind.port()), usize::from(b.bind.port()));
            let overlap = a0 < b0 + shards && b0 < a0 + shards;
            let same_ip = a.bind.ip() == b.bind.ip()
                || a.bind.ip().is_unspecified()
                || b.bind.ip().is_unspecified();
            if overlap && same_ip {
                return Err(format!(
                    "listeners {} and {} overlap: each takes {shards} consecutive ports (one per shard)",
                    a.name, b.name
                ));
            }
        }
    }
    Ok(out)
}

fn local_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_listeners() {
        let l = resolve(
            "PLAINTEXT://127.0.0.1:9092, SASL_SSL://127.0.0.1:9094,INTERNAL://127.0.0.1:9200",
            "SASL_SSL://broker1.example:19094",
            &format!("{DEFAULT_PROTOCOL_MAP},INTERNAL:SSL"),
            2,
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].protocol, Protocol::SaslSsl);
        assert_eq!(l[1].advertised_for(1), ("broker1.example".into(), 19095));
        assert_eq!(l[1].bind_for(1).port(), 9095);
        assert_eq!(l[2].protocol, Protocol::Ssl);
        assert_eq!(l[0].advertised_for(0), ("127.0.0.1".into(), 9092));
    }

    #[test]
    fn bad_listeners_are_refused() {
        for (ls, adv) in [
            ("", ""),
            ("PLAINTEXT://127.0.0.1", ""),
            ("FOO://127.0.0.1:9092", ""),
            ("PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9300", ""),
            ("PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093", ""),
            ("PLAINTEXT://127.0.0.1:9092", "SSL://x:1"),
            ("PLAINTEXT://127.0.0.1:65535", ""),
        ] {
            assert!(
                resolve(ls, adv, DEFAULT_PROTOCOL_MAP, 2).is_err(),
                "{ls} {adv}"
            );
        }
    }
}
