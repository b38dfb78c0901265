//! SaslHandshake (17) v0–1, SaslAuthenticate (36) v0–2, DescribeUserScramCredentials (50) v0
//! and AlterUserScramCredentials (51) v0 (KIP-554; both flexible).

use bytes::Bytes;

use super::wire::{Reader, Result};

#[derive(Debug, Clone)]
pub struct SaslHandshakeRequest {
    pub mechanism: String,
}

impl SaslHandshakeRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let mechanism = r.string(flex)?;
        Ok(SaslHandshakeRequest { mechanism })
    }
}

#[derive(Debug, Clone)]
pub struct SaslAuthenticateRequest {
    pub auth_bytes: Bytes,
}

impl SaslAuthenticateRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let auth_bytes = r.nullable_bytes(flex)?.unwrap_or_default();
        r.tagged_fields(flex)?;
        Ok(SaslAuthenticateRequest { auth_bytes })
    }
}

#[derive(Debug, Clone)]
pub struct DescribeScramRequest {
    /// `None`: every user.
    pub users: Option<Vec<String>>,
}

impl DescribeScramRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let users = r.nullable_array(flex, |r| {
            let name = r.string(flex)?;
            r.tagged_fields(flex)?;
            Ok(name)
        })?;
        r.tagged_fields(flex)?;
        Ok(DescribeScramRequest { users })
    }
}

#[derive(Debug, Clone)]
pub struct ScramUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Bytes,
    pub salted_password: Bytes,
}

#[derive(Debug, Clone)]
pub struct AlterScramRequest {
    /// (user, mechanism)
    pub deletions: Vec<(String, i8)>,
    pub upsertions: Vec<ScramUpsertion>,
}

impl AlterScramRequest {
    pub fn decode(r: &mut Reader, _v: i16, flex: bool) -> Result<Self> {
        let deletions = r.array(flex, |r| {
            let name = r.string(flex)?;
            let mechanism = r.i8()?;
            r.tagged_fields(flex)?;
            Ok((name, mechanism))
        })?;
        let upsertions = r.array(flex, |r| {
            let name = r.string(flex)?;
            let mechanism = r.i8()?;
            let iterations = r.i32()?;
            let salt = r.nullable_bytes(flex)?.unwrap_or_default();
            let salted_password = r.nullable_bytes(flex)?.unwrap_or_default();
            r.tagged_fields(flex)?;
            Ok(ScramUpsertion {
                name,
                mechanism,
                iterations,
                salt,
                salted_password,
            })
        })?;
        r.tagged_fields(flex)?;
        Ok(AlterScramRequest {
            deletions,
            upsertions,
        })
    }
}
