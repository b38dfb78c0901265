//! `shardlog user create|delete|list`: SCRAM users through AlterUserScramCredentials and
//! DescribeUserScramCredentials (KIP-554). As Kafka's tools do, the salted password is
//! computed here; the password itself never leaves this process.

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::{
    DescribeUserScramCredentialsRequest, UserName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use crate::security::scram::{random_bytes, Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

fn mechanisms(names: &[String]) -> Result<Vec<Mechanism>> {
    names
        .iter()
        .map(|n| {
            Mechanism::from_name(n).ok_or_else(|| {
                anyhow::anyhow!("unknown mechanism {n:?}: SCRAM-SHA-256 or SCRAM-SHA-512")
            })
        })
        .collect()
}

fn check(resp: kafka_protocol::messages::AlterUserScramCredentialsResponse) -> Result<()> {
    for r in resp.results {
        if r.error_code != 0 {
            bail!(
                "user {}: {} (error {})",
                r.user.as_str(),
                r.error_message.as_deref().unwrap_or(""),
                r.error_code
            );
        }
    }
    Ok(())
}

/// Creates the user, or sets a new password, for each mechanism.
pub fn create(
    bootstrap: &str,
    user: &str,
    password: &str,
    mechs: &[String],
    iterations: u32,
) -> Result<()> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        bail!("--iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}");
    }
    if password.is_empty() {
        bail!("the password is empty");
    }
    let mut req = AlterUserScramCredentialsRequest::default();
    for m in mechanisms(mechs)? {
        let salt = random_bytes(32);
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        req.upsertions.push(
            ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(user.to_string()))
                .with_mechanism(m.code())
                .with_iterations(iterations as i32)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted)),
        );
    }
    check(Client::connect(bootstrap)?.call(&req, 0)?)?;
    println!("user {user}: {} credentials set", mechs.join(", "));
    Ok(())
}

pub fn delete(bootstrap: &str, user: &str, mechs: &[String]) -> Result<()> {
    let mut req = AlterUserScramCredentialsRequest::default();
    for m in mechanisms(mechs)? {
        req.deletions.push(
            ScramCredentialDeletion::default()
                .with_name(StrBytes::from_string(user.to_string()))
                .with_mechanism(m.code()),
        );
    }
    check(Client::connect(bootstrap)?.call(&req, 0)?)?;
    println!("user {user}: {} credentials deleted", mechs.join(", "));
    Ok(())
}

pub fn list(bootstrap: &str, users: &[String]) -> Result<()> {
    let mut req = DescribeUserScramCredentialsRequest::default();
    req.users = (!users.is_empty()).then(|| {
        users
            .iter()
            .map(|u| UserName::default().with_name(StrBytes::from_string(u.clone())))
            .collect()
    });
    let resp = Client::connect(bootstrap)?.call(&req, 0)?;
    if resp.error_code != 0 {
        bail!(
            "{} (error {})",
            resp.error_message.as_deref().unwrap_or(""),
            resp.error_code
        );
    }
    println!("{:<32} MECHANISMS", "USER");
    let mut failed = false;
    for r in resp.results {
        if r.error_code != 0 {
            eprintln!(
                "{}: {}",
                r.user.as_str(),
                r.error_message.as_deref().unwrap_or("error")
            );
            failed = true;
            continue;
        }
        let mechs: Vec<String> = r
            .credential_infos
            .iter()
            .map(|c| {
                let name = Mechanism::from_code(c.mechanism).map_or("?", |m| m.name());
                format!("{name} ({} iterations)", c.iterations)
            })
            .collect();
        println!("{:<32} {}", r.user.as_str(), mechs.join(", "));
    }
    if failed {
        bail!("some users were not found");
    }
    Ok(())
}
