//! The web console, served on the broker's HTTP port: `/ui` (one page, inside the binary)
//! and its JSON API under `/api/` ([`api`]).
//!
//! Invariants: the console reads and writes only through the Kafka protocol — the same
//! admin client as the CLI, talking to this broker's own listener on a thread of its own —
//! so it knows nothing of shards, logs or the catalog, and sees exactly what a client
//! would; with a SASL listener it acts only as the user whose login the request carries
//! (so that user's ACLs apply); `ui = read-only` refuses every write, `ui = off` serves
//! nothing; request bodies and every list it returns are bounded.

pub mod api;
pub mod lag_history;

use std::collections::BTreeMap;

/// The page (HTML, CSS and script in one file).
pub const PAGE: &str = include_str!("console.html");
/// Largest request body the API reads.
pub const MAX_BODY: usize = 1 << 20;

/// `ui`: whether the console is served, and whether it may change anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiMode {
    ReadWrite,
    ReadOnly,
    Off,
}

impl UiMode {
    pub fn parse(s: &str) -> Result<UiMode, String> {
        match s {
            "read-write" | "on" => Ok(UiMode::ReadWrite),
            "read-only" => Ok(UiMode::ReadOnly),
            "off" => Ok(UiMode::Off),
            other => Err(format!("{other:?}: use read-write, read-only or off")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UiMode::ReadWrite => "read-write",
            UiMode::ReadOnly => "read-only",
            UiMode::Off => "off",
        }
    }
}

/// `%XX` and `+` decoded (a query string's value); bytes that do not decode stay as they are.
pub fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path (decoded) and query pairs of a request target.
pub fn split_target(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .take(64)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_decode() {
        let (p, q) = split_target("/api/topics/a%2Fb?search=x+y&page=2&bad=%zz&end=%4");
        assert_eq!(p, "/api/topics/a/b");
        assert_eq!(q["search"], "x y");
        assert_eq!(q["page"], "2");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
        assert_eq!(UiMode::parse("read-only"), Ok(UiMode::ReadOnly));
        assert!(UiMode::parse("maybe").is_err());
    }
}
