//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the SCRAM users of
//! the cluster. A change is checked whole per user (all of a user's changes apply or none),
//! then made by the single node's controller shard (persisted to `security.json`, then
//! installed on every shard) or committed through the metadata quorum.

use crate::protocol::str_bytes as s;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::{
    AlterUserScramCredentialsResponse, AlterUserScramCredentialsResult,
};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResponse, DescribeUserScramCredentialsResult,
};
use tracing::{error, info};

use super::admin::CONTROLLER;
use super::errors;
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::protocol::{AlterScramRequest, DescribeScramRequest};
use crate::security::scram::{Credential, Mechanism};
use crate::security::store::{Refused, SecurityChange};

/// Most changes one request may carry.
const MAX_CHANGES: usize = 1000;

pub fn describe(shard: &Shard, req: DescribeScramRequest) -> DescribeUserScramCredentialsResponse {
    let cat = shard.catalog();
    let users = &cat.security.users;
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let info = |name: &str| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = s(name);
        match users.get(name) {
            Some(m) => {
                r.credential_infos = m
                    .iter()
                    .map(|(mech, c)| {
                        CredentialInfo::default()
                            .with_mechanism(mech.code())
                            .with_iterations(c.iterations as i32)
                    })
                    .collect();
            }
            None => {
                r.error_code = errors::RESOURCE_NOT_FOUND;
                r.error_message = Some(s(format!(
                    "Attempt to describe a user credential that does not exist: {name}"
                )));
            }
        }
        r
    };
    match req.users {
        None => resp.results = users.keys().map(|u| info(u)).collect(),
        Some(names) => {
            let mut seen = BTreeSet::new();
            let dups: BTreeSet<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
            for name in names.iter().collect::<BTreeSet<_>>() {
                if dups.contains(name) {
                    let mut r = DescribeUserScramCredentialsResult::default();
                    r.user = s(name.as_str());
                    r.error_code = errors::DUPLICATE_RESOURCE;
                    r.error_message = Some(s(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}")));
                    resp.results.push(r);
                } else {
                    resp.results.push(info(name));
                }
            }
        }
    }
    resp
}

/// Turns the request into changes per user, or the error that refuses each user.
fn changes_by_user(
    req: AlterScramRequest,
) -> BTreeMap<String, Result<Vec<SecurityChange>, Refused>> {
    let mut out: BTreeMap<String, Result<Vec<SecurityChange>, Refused>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, i8)> = BTreeSet::new();
    let mut add = |user: String, mech: i8, change: Result<SecurityChange, Refused>| {
        let change = if !seen.insert((user.clone(), mech)) {
            Err(Refused {
                code: errors::DUPLICATE_RESOURCE,
                message: "A user credential cannot be altered twice in the same request".into(),
            })
        } else {
            change
        };
        let e = out.entry(user).or_insert_with(|| Ok(Vec::new()));
        match (e.as_mut(), change) {
            (Ok(v), Ok(c)) => v.push(c),
            (Ok(_), Err(r)) => *e = Err(r),
            (Err(_), _) => {}
        }
    };
    let mechanism = |code: i8| {
        Mechanism::from_code(code).ok_or_else(|| Refused {
            code: errors::UNSUPPORTED_SASL_MECHANISM,
            message: format!("Unknown SCRAM mechanism {code}"),
        })
    };
    for (user, code) in req.deletions {
        let c = mechanism(code).map(|mechanism| SecurityChange::DeleteScram {
            user: user.clone(),
            mechanism,
        });
        add(user, code, c);
    }
    for u in req.upsertions {
        let c = mechanism(u.mechanism).and_then(|m| {
            if u.salted_password.is_empty() || u.salted_password.len() > 1024 {
                return Err(Refused {
                    code: errors::UNACCEPTABLE_CREDENTIAL,
                    message: "the salted password must be 1 to 1024 bytes".into(),
                });
            }
            let iterations = u32::try_from(u.iterations).unwrap_or(0);
            Ok(SecurityChange::UpsertScram {
                user: u.name.clone(),
                mechanism: m,
                credential: Credential::from_salted(
                    m,
                    u.salt.to_vec(),
                    iterations,
                    &u.salted_password,
                ),
            })
        });
        add(u.name, u.mechanism, c);
    }
    out
}

pub async fn alter(shard: &Rc<Shard>, req: AlterScramRequest) -> AlterUserScramCredentialsResponse {
    let mut resp = AlterUserScramCredentialsResponse::default();
    if req.deletions.len() + req.upsertions.len() > MAX_CHANGES {
        let mut r = AlterUserScramCredentialsResult::default();
        r.error_code = errors::INVALID_REQUEST;
        r.error_message = Some(s(format!("at most {MAX_CHANGES} changes per request")));
        resp.results.push(r);
        return resp;
    }
    for (user, changes) in changes_by_user(req) {
        let outcome = match changes {
            Err(r) => Err(r),
            Ok(changes) => apply(shard, changes).await,
        };
        let mut r = AlterUserScramCredentialsResult::default();
        r.user = s(user.as_str());
        match outcome {
            Ok(()) => info!(%user, "SCRAM credentials changed"),
            Err(e) => {
                r.error_code = e.code;
                r.error_message = Some(s(e.message));
            }
        }
        resp.results.push(r);
    }
    resp
}

/// Applies security changes, all or none (one user's credentials, a request's ACLs).
pub async fn apply(shard: &Rc<Shard>, changes: Vec<SecurityChange>) -> Result<(), Refused> {
    // Checked together first: a later change may depend on an earlier one.
    let mut trial = (*shard.catalog().security).clone();
    for c in &changes {
        trial.apply(c)?;
    }
    match &shard.proposer {
        Some(p) => {
            for c in changes {
                let cmd = crate::cluster::state::Command::Security(c);
                match p.propose(cmd, super::cluster_link::PROPOSE_DEADLINE).await {
                    Ok(crate::cluster::state::Outcome::Denied { code, message }) => {
                        return Err(Refused { code, message })
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Refused {
                            code: errors::NOT_CONTROLLER,
                            message: format!("the metadata quorum did not take the change: {e}"),
                        })
                    }
                }
            }
            Ok(())
        }
        None if shard.id == CONTROLLER => controller_apply(shard, changes).await,
        None => match shard.call(CONTROLLER, Call::AlterSecurity(changes)).await {
            Some(Reply::Security(r)) => r,
            _ => Err(Refused {
                code: errors::UNKNOWN_SERVER_ERROR,
                message: "the controller shard did not answer".into(),
            }),
        },
    }
}

/// On a single node's controller shard: applies, persists, installs everywhere.
pub async fn controller_apply(
    shard: &Rc<Shard>,
    changes: Vec<SecurityChange>,
) -> Result<(), Refused> {
    let _guard = shard.admin_lock.lock().await;
    let mut cat = (*shard.catalog()).clone();
    let mut state = (*cat.security).clone();
    for c in &changes {
        state.apply(c)?;
    }
    if let Err(e) = state.persist(&shard.cfg.data_dir) {
        error!("security metadata not persisted: {e}");
        return Err(Refused {
            code: errors::KAFKA_STORAGE_ERROR,
            message: e.to_string(),
        });
    }
    cat.security = Arc::new(state);
    let cat = Arc::new(cat);
    for j in 0..shard.nshards {
        if j == shard.id {
            shard.apply_catalog(cat.clone()).await;
        } else if !matches!(
            shard.call(j, Call::Apply(cat.clone())).await,
            Some(Reply::Applied(_))
        ) {
            error!(shard = j, "shard did not apply the new security metadata");
        }
    }
    Ok(())
}
