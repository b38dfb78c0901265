//! DescribeAcls, CreateAcls and DeleteAcls: the cluster's ACL bindings, changed like the
//! SCRAM users (the single node's controller shard, or the metadata quorum). Without an
//! authorizer they answer SECURITY_DISABLED, as Kafka does.

use crate::protocol::str_bytes as s;
use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::{AclCreationResult, CreateAclsResponse};
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl, DeleteAclsResponse,
};
use kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource, DescribeAclsResponse,
};
use tracing::info;

use super::errors;
use super::shard::Shard;
use crate::protocol::{AclSpec, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use crate::security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use crate::security::store::SecurityChange;

const SECURITY_DISABLED: i16 = 54;
/// Most bindings or filters one request may carry.
const MAX_ITEMS: usize = 1000;

/// A binding to create, or why it cannot be.
fn binding(a: &AclSpec) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(a.resource_type)
        .ok_or_else(|| format!("invalid resource type {}", a.resource_type))?;
    let pattern = match a.pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        p => return Err(format!("invalid pattern type {p} (LITERAL or PREFIXED)")),
    };
    let operation = Operation::from_code(a.operation)
        .ok_or_else(|| format!("invalid operation {}", a.operation))?;
    let permission = match a.permission {
        2 => Permission::Deny,
        3 => Permission::Allow,
        p => return Err(format!("invalid permission type {p}")),
    };
    let b = AclBinding {
        resource_type,
        name: a.name.clone().unwrap_or_default(),
        pattern,
        principal: a.principal.clone().unwrap_or_default(),
        host: a.host.clone().unwrap_or_default(),
        operation,
        permission,
    };
    b.validate()?;
    Ok(b)
}

/// A filter (ANY = 1 for each code; pattern MATCH = 2), or why it is invalid.
fn filter(a: &AclSpec) -> Result<AclFilter, String> {
    let any_or = |code: i8, f: &dyn Fn(i8) -> Option<()>| code == 1 || f(code).is_some();
    if !any_or(a.resource_type, &|c| ResourceType::from_code(c).map(|_| ()))
        || !any_or(a.operation, &|c| Operation::from_code(c).map(|_| ()))
        || !matches!(a.permission, 1..=3)
        || !matches!(a.pattern_type, 1..=4)
    {
        return Err("invalid filter".into());
    }
    Ok(AclFilter {
        resource_type: ResourceType::from_code(a.resource_type),
        name: a.name.clone(),
        pattern: match a.pattern_type {
            1 => None,
            2 => Some(None),
            3 => Some(Some(PatternType::Literal)),
            _ => Some(Some(PatternType::Prefixed)),
        },
        principal: a.principal.clone(),
        host: a.host.clone(),
        operation: Operation::from_code(a.operation),
        permission: match a.permission {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        },
    })
}

pub fn describe(shard: &Shard, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    if !shard.security.authz.enabled {
        resp.error_code = SECURITY_DISABLED;
        resp.error_message = Some(s("no authorizer is configured (authorizer.class.name)"));
        return resp;
    }
    let f = match filter(&req.filter) {
        Ok(f) => f,
        Err(e) => {
            resp.error_code = errors::INVALID_REQUEST;
            resp.error_message = Some(s(e));
            return resp;
        }
    };
    let cat = shard.catalog();
    for b in cat.security.acls.iter().filter(|b| f.matches(b)) {
        let acl = AclDescription::default()
            .with_principal(s(b.principal.as_str()))
            .with_host(s(b.host.as_str()))
            .with_operation(b.operation.code())
            .with_permission_type(b.permission.code());
        let same = |r: &DescribeAclsResource| {
            r.resource_type == b.resource_type.code()
                && r.resource_name.as_str() == b.name
                && r.pattern_type == b.pattern.code()
        };
        match resp.resources.iter_mut().find(|r| same(r)) {
            Some(r) => r.acls.push(acl),
            None => resp.resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(s(b.name.as_str()))
                    .with_pattern_type(b.pattern.code())
                    .with_acls(vec![acl]),
            ),
        }
    }
    resp
}

pub async fn create(shard: &Rc<Shard>, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    let fail = |code: i16, m: &str| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(s(m)))
    };
    if !shard.security.authz.enabled || req.creations.len() > MAX_ITEMS {
        let (code, m) = if shard.security.authz.enabled {
            (errors::INVALID_REQUEST, "too many ACLs in one request")
        } else {
            (
                SECURITY_DISABLED,
                "no authorizer is configured (authorizer.class.name)",
            )
        };
        resp.results = req.creations.iter().map(|_| fail(code, m)).collect();
        return resp;
    }
    let parsed: Vec<Result<AclBinding, String>> = req.creations.iter().map(binding).collect();
    let good: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let outcome = if good.is_empty() {
        Ok(())
    } else {
        super::users::apply(shard, vec![SecurityChange::CreateAcls(good.clone())]).await
    };
    for r in parsed {
        resp.results.push(match (&r, &outcome) {
            (Err(e), _) => fail(errors::INVALID_REQUEST, e),
            (Ok(_), Err(e)) => fail(e.code, &e.message),
            (Ok(b), Ok(())) => {
                info!(acl = ?b, "ACL created");
                AclCreationResult::default()
            }
        });
    }
    resp
}

pub async fn delete(shard: &Rc<Shard>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    if !shard.security.authz.enabled || req.filters.len() > MAX_ITEMS {
        let (code, m) = if shard.security.authz.enabled {
            (errors::INVALID_REQUEST, "too many filters in one request")
        } else {
            (
                SECURITY_DISABLED,
                "no authorizer is configured (authorizer.class.name)",
            )
        };
        resp.filter_results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(s(m)))
            })
            .collect();
        return resp;
    }
    let cat = shard.catalog();
    let filters: Vec<Result<AclFilter, String>> = req.filters.iter().map(filter).collect();
    let mut gone: Vec<AclBinding> = Vec::new();
    for f in filters.iter().flatten() {
        for b in cat.security.acls.iter().filter(|b| f.matches(b)) {
            if !gone.contains(b) {
                gone.push(b.clone());
            }
        }
    }
    let outcome = if gone.is_empty() {
        Ok(())
    } else {
        super::users::apply(shard, vec![SecurityChange::DeleteAcls(gone)]).await
    };
    for f in filters {
        let mut r = DeleteAclsFilterResult::default();
        match (f, &outcome) {
            (Err(e), _) => {
                r.error_code = errors::INVALID_REQUEST;
                r.error_message = Some(s(e));
            }
            (Ok(_), Err(e)) => {
                r.error_code = e.code;
                r.error_message = Some(s(e.message.clone()));
            }
            (Ok(f), Ok(())) => {
                r.matching_acls = cat
                    .security
                    .acls
                    .iter()
                    .filter(|b| f.matches(b))
                    .map(|b| {
                        info!(acl = ?b, "ACL deleted");
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(s(b.name.as_str()))
                            .with_pattern_type(b.pattern.code())
                            .with_principal(s(b.principal.as_str()))
                            .with_host(s(b.host.as_str()))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect();
            }
        }
        resp.filter_results.push(r);
    }
    resp
}
