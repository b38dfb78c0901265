//! Layered broker settings: built-in defaults < TOML file (`--config`) < `SHARDLOG_*`
//! environment variables < command-line flags. Keys are Kafka's broker config names where
//! Kafka has one; each effective value remembers where it came from (`shardlog config print`).
//!
//! Invariant: every key in the file and the flags is known and every value parses, or
//! startup fails with an error naming the key and its source. An unknown `SHARDLOG_*`
//! environment variable (a script's own `SHARDLOG_BIN`, say) is not an error but a warning
//! naming it; a known one with a bad value is an error. Nothing is silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::BrokerConfig;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("unknown setting `{key}` ({origin})")]
    Unknown { key: String, origin: Source },
    #[error("invalid value {value:?} for `{key}` ({origin}): {reason}")]
    Invalid {
        key: String,
        value: String,
        origin: Source,
        reason: String,
    },
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(fl) => write!(f, "flag {fl}"),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub broker: BrokerConfig,
    pub log_format: LogFormat,
    pub log_level: String,
}

pub type Apply = fn(&mut Settings, &str) -> Result<(), String>;
pub type Show = fn(&Settings) -> String;

/// Every setting: the broker's ([`KEYS`]) and the security ones.
pub fn keys() -> impl Iterator<Item = &'static (&'static str, &'static str, Apply, Show)> {
    KEYS.iter().chain(crate::security::settings::KEYS.iter())
}

pub mod dynamic;
mod keys;

pub use keys::{ratio, KEYS};

/// Command-line flags of `serve` and the setting each sets.
pub const FLAG_KEYS: &[(&str, &str)] = &[
    ("--listen", "listen"),
    ("--data-dir", "log.dirs"),
    ("--cores", "cores"),
    ("--max-frame-bytes", "socket.request.max.bytes"),
    ("--auto-create-topics", "auto.create.topics.enable"),
    ("--num-partitions", "num.partitions"),
    ("--segment-bytes", "log.segment.bytes"),
    ("--segment-ms", "log.roll.ms"),
    ("--message-max-bytes", "message.max.bytes"),
    ("--producer-id-expiration-ms", "producer.id.expiration.ms"),
    (
        "--group-initial-rebalance-delay-ms",
        "group.initial.rebalance.delay.ms",
    ),
    (
        "--group-min-session-timeout-ms",
        "group.min.session.timeout.ms",
    ),
    ("--offsets-retention-minutes", "offsets.retention.minutes"),
    ("--metrics-listen", "metrics.listen"),
    ("--flush", "log.flush.policy"),
    ("--ui", "ui"),
    ("--log-format", "log.format"),
    ("--log", "log.level"),
];

/// The environment variable of a key: `SHARDLOG_` + upper case, dots as underscores.
pub fn env_name(key: &str) -> String {
    format!("SHARDLOG_{}", key.to_uppercase().replace('.', "_"))
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Effective settings and the source of each.
pub struct Resolved {
    pub settings: Settings,
    pub sources: BTreeMap<&'static str, Source>,
    /// What was ignored, for the caller to log once logging is set up.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// `key = value  # source`, one line per setting.
    pub fn print(&self) -> String {
        let mut out = String::new();
        for (key, help, _, show) in keys() {
            let src = self.sources.get(key).cloned().unwrap_or(Source::Default);
            out.push_str(&format!(
                "{key} = {:?}  # {src}; {help}\n",
                show(&self.settings)
            ));
        }
        out
    }
}

/// Layers defaults, `file`, the environment (`env`) and `flags` (key, value, flag name).
pub fn resolve(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(&'static str, String, &'static str)],
) -> Result<Resolved, SettingsError> {
    let mut r = Resolved {
        settings: Settings {
            broker: BrokerConfig::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        },
        sources: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let set = |r: &mut Resolved, key: &str, value: &str, source: Source| {
        let Some((k, _, apply, _)) = keys().find(|(k, ..)| *k == key) else {
            return Err(SettingsError::Unknown {
                key: key.to_string(),
                origin: source,
            });
        };
        apply(&mut r.settings, value).map_err(|reason| SettingsError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            origin: source.clone(),
            reason,
        })?;
        r.sources.insert(k, source);
        Ok(())
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: toml::Value = toml::from_str(&text).map_err(|e| SettingsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut pairs = Vec::new();
        flatten("", &value, &mut pairs);
        for (k, v) in pairs {
            set(&mut r, &k, &v, Source::File(path.to_path_buf()))?;
        }
    }
    for (name, value) in env {
        if !name.starts_with("SHARDLOG_") {
            continue;
        }
        let Some(key) = keys().map(|(k, ..)| *k).find(|k| env_name(k) == *name) else {
            r.warnings.push(format!(
                "ignoring environment variable {name}: not a shardlog setting"
            ));
            continue;
        };
        set(&mut r, key, value, Source::Env(name.clone()))?;
    }
    for (key, value, flag) in flags {
        set(&mut r, key, value, Source::Flag((*flag).to_string()))?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_file_env_flag() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("shardlog.toml");
        std::fs::write(
            &f,
            "num.partitions = 3\nlog.segment.bytes = 1000000\n\"log.format\" = \"json\"\n",
        )
        .expect("write");
        let env = vec![("SHARDLOG_NUM_PARTITIONS".to_string(), "5".to_string())];
        let r = resolve(Some(&f), &env, &[]).expect("resolve");
        assert_eq!(r.settings.broker.default_partitions, 5);
        assert_eq!(r.settings.broker.segment_bytes, 1_000_000);
        assert_eq!(r.settings.log_format, LogFormat::Json);
        let flags = vec![("num.partitions", "7".to_string(), "--num-partitions")];
        let r = resolve(Some(&f), &env, &flags).expect("resolve");
        assert_eq!(r.settings.broker.default_partitions, 7);
        let printed = r.print();
        assert!(
            printed.contains("num.partitions = \"7\"  # flag --num-partitions"),
            "{printed}"
        );
        assert!(
            printed.contains("log.segment.bytes = \"1000000\"  # file"),
            "{printed}"
        );
        assert!(printed.contains("cores = "), "{printed}");
    }

    #[test]
    fn every_flag_sets_a_known_key() {
        for (flag, key) in FLAG_KEYS {
            assert!(
                keys().any(|(k, ..)| k == key),
                "{flag} maps to unknown {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "no.such.key = 1\n").expect("write");
        let e = resolve(Some(&f), &[], &[])
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("unknown setting `no.such.key`"), "{e}");
        std::fs::write(&f, "log.segment.bytes = \"lots\"\n").expect("write");
        let e = resolve(Some(&f), &[], &[])
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("log.segment.bytes") && e.contains("lots"), "{e}");
        // An unknown environment variable is a warning; a bad value of a known one fails.
        let env = vec![("SHARDLOG_NOPE".to_string(), "1".to_string())];
        let r = resolve(None, &env, &[]).expect("unknown env var is not fatal");
        assert!(
            r.warnings.iter().any(|w| w.contains("SHARDLOG_NOPE")),
            "{:?}",
            r.warnings
        );
        let env = vec![("SHARDLOG_NUM_PARTITIONS".to_string(), "many".to_string())];
        let e = resolve(None, &env, &[]).err().expect("error").to_string();
        assert!(e.contains("SHARDLOG_NUM_PARTITIONS"), "{e}");
    }
}
