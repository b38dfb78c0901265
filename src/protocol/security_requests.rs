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

/// One binding as CreateAcls carries it, or a filter as DescribeAcls and DeleteAcls do
/// (codes as sent; pattern 3 LITERAL before v1).
#[derive(Debug, Clone)]
pub struct AclSpec {
    pub resource_type: i8,
    pub name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclSpec {
    fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let resource_type = r.i8()?;
        let name = r.nullable_string(flex)?;
        let pattern_type = if v >= 1 { r.i8()? } else { 3 };
        let principal = r.nullable_string(flex)?;
        let host = r.nullable_string(flex)?;
        let operation = r.i8()?;
        let permission = r.i8()?;
        Ok(AclSpec {
            resource_type,
            name,
            pattern_type,
            principal,
            host,
            operation,
            permission,
        })
    }
}

/// DescribeAcls (29) v0–3.
#[derive(Debug, Clone)]
pub struct DescribeAclsRequest {
    pub filter: AclSpec,
}

impl DescribeAclsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let filter = AclSpec::decode(r, v, flex)?;
        r.tagged_fields(flex)?;
        Ok(DescribeAclsRequest { filter })
    }
}

/// CreateAcls (30) v0–3.
#[derive(Debug, Clone)]
pub struct CreateAclsRequest {
    pub creations: Vec<AclSpec>,
}

impl CreateAclsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let creations = r.array(flex, |r| {
            let s = AclSpec::decode(r, v, flex)?;
            r.tagged_fields(flex)?;
            Ok(s)
        })?;
        r.tagged_fields(flex)?;
        Ok(CreateAclsRequest { creations })
    }
}

/// DeleteAcls (31) v0–3.
#[derive(Debug, Clone)]
pub struct DeleteAclsRequest {
    pub filters: Vec<AclSpec>,
}

impl DeleteAclsRequest {
    pub fn decode(r: &mut Reader, v: i16, flex: bool) -> Result<Self> {
        let filters = r.array(flex, |r| {
            let s = AclSpec::decode(r, v, flex)?;
            r.tagged_fields(flex)?;
            Ok(s)
        })?;
        r.tagged_fields(flex)?;
        Ok(DeleteAclsRequest { filters })
    }
}
