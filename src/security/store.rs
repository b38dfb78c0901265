//! The security metadata every shard and node must agree on: SCRAM credentials per user and
//! mechanism. Changed only through [`SecurityChange`]s applied in order — by shard 0 of a
//! single node (persisted to `<data-dir>/security.json` before any shard sees it) or by the
//! metadata quorum's image in a cluster — and read as an immutable snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::acl::AclBinding;
use super::scram::{Credential, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

const FILE: &str = "security.json";
/// Users one cluster keeps (a bound on what a client can make the brokers store).
pub const MAX_USERS: usize = 100_000;
/// Longest user name.
pub const MAX_USER_NAME: usize = 256;
/// ACLs one cluster keeps.
pub const MAX_ACLS: usize = 100_000;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("security metadata I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("security metadata file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityState {
    /// user → mechanism → credential.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<Mechanism, Credential>>,
    /// ACLs, in the order they were created.
    #[serde(default)]
    pub acls: Vec<AclBinding>,
}

/// One change, as AlterUserScramCredentials asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityChange {
    UpsertScram {
        user: String,
        mechanism: Mechanism,
        credential: Credential,
    },
    DeleteScram {
        user: String,
        mechanism: Mechanism,
    },
    /// New ACLs (one already there is not added twice).
    CreateAcls(Vec<AclBinding>),
    /// These exact ACLs go (the proposer chose them with a filter).
    DeleteAcls(Vec<AclBinding>),
}

/// Why a change was refused: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: i16,
    pub message: String,
}

pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const INVALID_REQUEST: i16 = 42;

fn refused(code: i16, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

impl SecurityChange {
    pub fn user(&self) -> &str {
        match self {
            SecurityChange::UpsertScram { user, .. } | SecurityChange::DeleteScram { user, .. } => {
                user
            }
            SecurityChange::CreateAcls(_) | SecurityChange::DeleteAcls(_) => "",
        }
    }
}

impl SecurityState {
    /// A user's credentials, any mechanism.
    pub fn credentials(&self, user: &str) -> Vec<(Mechanism, Credential)> {
        self.users
            .get(user)
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn credential(&self, user: &str, mech: Mechanism) -> Option<Credential> {
        self.users.get(user)?.get(&mech).cloned()
    }

    /// Checks a change against this state without applying it.
    pub fn check(&self, change: &SecurityChange) -> Result<(), Refused> {
        match change {
            SecurityChange::CreateAcls(new) => {
                for b in new {
                    b.validate().map_err(|m| refused(INVALID_REQUEST, m))?;
                }
                if self.acls.len() + new.len() > MAX_ACLS {
                    return Err(refused(INVALID_REQUEST, format!("at most {MAX_ACLS} ACLs")));
                }
                return Ok(());
            }
            SecurityChange::DeleteAcls(_) => return Ok(()),
            _ => {}
        }
        let user = change.user();
        if user.is_empty() || user.len() > MAX_USER_NAME || user.chars().any(char::is_control) {
            return Err(refused(
                UNACCEPTABLE_CREDENTIAL,
                format!("user names are 1 to {MAX_USER_NAME} printable characters"),
            ));
        }
        match change {
            SecurityChange::UpsertScram { credential, .. } => {
                if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
                    return Err(refused(
                        UNACCEPTABLE_CREDENTIAL,
                        format!("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
                    ));
                }
                if credential.salt.is_empty() || credential.salt.len() > 1024 {
                    return Err(refused(
                        UNACCEPTABLE_CREDENTIAL,
                        "salt must be 1 to 1024 bytes",
                    ));
                }
                if !self.users.contains_key(user) && self.users.len() >= MAX_USERS {
                    return Err(refused(
                        UNACCEPTABLE_CREDENTIAL,
                        format!("at most {MAX_USERS} users"),
                    ));
                }
                Ok(())
            }
            SecurityChange::CreateAcls(_) | SecurityChange::DeleteAcls(_) => Ok(()),
            SecurityChange::DeleteScram { mechanism, .. } => {
                if self.credential(user, *mechanism).is_none() {
                    return Err(refused(
                        RESOURCE_NOT_FOUND,
                        format!("user {user:?} has no {} credential", mechanism.name()),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Applies a change (checked first; a refused change leaves the state as it was).
    pub fn apply(&mut self, change: &SecurityChange) -> Result<(), Refused> {
        self.check(change)?;
        match change {
            SecurityChange::UpsertScram {
                user,
                mechanism,
                credential,
            } => {
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            SecurityChange::DeleteScram { user, mechanism } => {
                if let Some(m) = self.users.get_mut(user) {
                    m.remove(mechanism);
                    if m.is_empty() {
                        self.users.remove(user);
                    }
                }
            }
            SecurityChange::CreateAcls(new) => {
                for b in new {
                    if !self.acls.contains(b) {
                        self.acls.push(b.clone());
                    }
                }
            }
            SecurityChange::DeleteAcls(gone) => self.acls.retain(|b| !gone.contains(b)),
        }
        Ok(())
    }

    /// Loads `<dir>/security.json`; empty if there is none.
    pub fn load(dir: &Path) -> Result<SecurityState, StoreError> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| StoreError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecurityState::default()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Writes `<dir>/security.json` durably: temp file, fsync, rename, fsync of the directory.
    pub fn persist(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(FILE);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        crate::durable::write_atomic(&path, &body).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SecurityState::default();
        let cred = Credential::from_password(Mechanism::Sha512, "pw", 4096);
        s.apply(&SecurityChange::UpsertScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
            credential: cred.clone(),
        })
        .unwrap();
        assert_eq!(s.credential("alice", Mechanism::Sha512), Some(cred.clone()));
        s.persist(dir.path()).unwrap();
        assert_eq!(SecurityState::load(dir.path()).unwrap(), s);
        let bad = SecurityChange::UpsertScram {
            user: "bob".into(),
            mechanism: Mechanism::Sha256,
            credential: Credential {
                iterations: 10,
                ..cred
            },
        };
        assert_eq!(s.apply(&bad).unwrap_err().code, UNACCEPTABLE_CREDENTIAL);
        let del = SecurityChange::DeleteScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha256,
        };
        assert_eq!(s.apply(&del).unwrap_err().code, RESOURCE_NOT_FOUND);
        s.apply(&SecurityChange::DeleteScram {
            user: "alice".into(),
            mechanism: Mechanism::Sha512,
        })
        .unwrap();
        assert!(s.users.is_empty());
        // The file never holds a password.
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!text.contains("pw\""));
    }
}
