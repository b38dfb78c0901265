//! `shardlog acl add|list|remove`: the cluster's ACLs through CreateAcls, DescribeAcls and
//! DeleteAcls (flags as Kafka's kafka-acls and rpk name them).

use crate::protocol::str_bytes as s;
use anyhow::{bail, Result};
use kafka_protocol::messages::create_acls_request::{AclCreation, CreateAclsRequest};
use kafka_protocol::messages::delete_acls_request::{DeleteAclsFilter, DeleteAclsRequest};
use kafka_protocol::messages::DescribeAclsRequest;

use super::client::Client;
use crate::security::acl::{Operation, ResourceType};

/// The resource an ACL command names (one of the kinds, or none for "any").
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub topic: Option<String>,
    pub group: Option<String>,
    pub transactional_id: Option<String>,
    pub cluster: bool,
    /// `literal` (default) or `prefixed`; for list/remove also `any` or `match`.
    pub pattern: String,
}

impl Resource {
    /// (resource type code, name) — ANY (1) with no name when none is named.
    fn code_and_name(&self) -> Result<(i8, Option<String>)> {
        let named = [
            self.topic
                .as_ref()
                .map(|t| (ResourceType::Topic, t.clone())),
            self.group
                .as_ref()
                .map(|g| (ResourceType::Group, g.clone())),
            self.transactional_id
                .as_ref()
                .map(|x| (ResourceType::TransactionalId, x.clone())),
            self.cluster
                .then(|| (ResourceType::Cluster, "kafka-cluster".to_string())),
        ];
        let mut it = named.into_iter().flatten();
        match (it.next(), it.next()) {
            (None, _) => Ok((1, None)),
            (Some((rt, n)), None) => Ok((rt.code(), Some(n))),
            _ => bail!("name one resource: --topic, --group, --transactional-id or --cluster"),
        }
    }

    fn pattern_code(&self, for_filter: bool) -> Result<i8> {
        Ok(match self.pattern.as_str() {
            "" | "literal" => 3,
            "prefixed" => 4,
            "any" if for_filter => 1,
            "match" if for_filter => 2,
            p => bail!("unknown --resource-pattern-type {p:?}"),
        })
    }
}

fn operations(ops: &[String]) -> Result<Vec<Operation>> {
    ops.iter()
        .flat_map(|o| o.split(','))
        .map(|o| Operation::parse(o).ok_or_else(|| anyhow::anyhow!("unknown operation {o:?}")))
        .collect()
}

pub fn add(
    bootstrap: &str,
    allow: &[String],
    deny: &[String],
    ops: &[String],
    host: &str,
    res: &Resource,
) -> Result<()> {
    let (rt, name) = res.code_and_name()?;
    let Some(name) = name else {
        bail!("name the resource: --topic, --group, --transactional-id or --cluster");
    };
    if allow.is_empty() && deny.is_empty() {
        bail!("name a principal: --allow-principal or --deny-principal");
    }
    let ops = operations(ops)?;
    if ops.is_empty() {
        bail!("name at least one --operation");
    }
    let mut req = CreateAclsRequest::default();
    for (principals, perm) in [(allow, 3i8), (deny, 2i8)] {
        for p in principals {
            for op in &ops {
                req.creations.push(
                    AclCreation::default()
                        .with_resource_type(rt)
                        .with_resource_name(s(&name))
                        .with_resource_pattern_type(res.pattern_code(false)?)
                        .with_principal(s(p))
                        .with_host(s(host))
                        .with_operation(op.code())
                        .with_permission_type(perm),
                );
            }
        }
    }
    let resp = Client::connect(bootstrap)?.call(&req, 3)?;
    for r in &resp.results {
        if r.error_code != 0 {
            bail!(
                "{} (error {})",
                r.error_message.as_deref().unwrap_or("refused"),
                r.error_code
            );
        }
    }
    println!("{} ACL(s) added", resp.results.len());
    Ok(())
}

/// (resource type, name, pattern, principal, host, operation, permission) as text rows.
type Row = [String; 7];

fn print(rows: &[Row]) {
    println!(
        "{:<16} {:<28} {:<9} {:<24} {:<10} {:<16} PERMISSION",
        "TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION"
    );
    for r in rows {
        println!(
            "{:<16} {:<28} {:<9} {:<24} {:<10} {:<16} {}",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        );
    }
}

fn text(rt: i8, name: &str, pattern: i8, principal: &str, host: &str, op: i8, perm: i8) -> Row {
    [
        ResourceType::from_code(rt)
            .map_or("?", |r| r.name())
            .to_string(),
        name.to_string(),
        if pattern == 4 { "PREFIXED" } else { "LITERAL" }.to_string(),
        principal.to_string(),
        host.to_string(),
        Operation::from_code(op)
            .map_or("?", |o| o.name())
            .to_string(),
        if perm == 2 { "DENY" } else { "ALLOW" }.to_string(),
    ]
}

pub fn list(bootstrap: &str, principal: Option<&str>, res: &Resource) -> Result<()> {
    let (rt, name) = res.code_and_name()?;
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(rt)
        .with_resource_name_filter(name.as_deref().map(s))
        .with_pattern_type_filter(if res.pattern.is_empty() {
            1
        } else {
            res.pattern_code(true)?
        })
        .with_principal_filter(principal.map(s))
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let resp = Client::connect(bootstrap)?.call(&req, 3)?;
    if resp.error_code != 0 {
        bail!(
            "{} (error {})",
            resp.error_message.as_deref().unwrap_or("refused"),
            resp.error_code
        );
    }
    let mut rows = Vec::new();
    for r in &resp.resources {
        for a in &r.acls {
            rows.push(text(
                r.resource_type,
                r.resource_name.as_str(),
                r.pattern_type,
                a.principal.as_str(),
                a.host.as_str(),
                a.operation,
                a.permission_type,
            ));
        }
    }
    print(&rows);
    Ok(())
}

pub fn remove(
    bootstrap: &str,
    principal: Option<&str>,
    ops: &[String],
    res: &Resource,
) -> Result<()> {
    let (rt, name) = res.code_and_name()?;
    if name.is_none() && principal.is_none() {
        bail!("name a resource or a --principal (removing every ACL is not offered)");
    }
    let ops = operations(ops)?;
    let ops: Vec<i8> = if ops.is_empty() {
        vec![1]
    } else {
        ops.iter().map(|o| o.code()).collect()
    };
    let mut req = DeleteAclsRequest::default();
    for op in ops {
        req.filters.push(
            DeleteAclsFilter::default()
                .with_resource_type_filter(rt)
                .with_resource_name_filter(name.as_deref().map(s))
                .with_pattern_type_filter(if res.pattern.is_empty() {
                    3
                } else {
                    res.pattern_code(true)?
                })
                .with_principal_filter(principal.map(s))
                .with_host_filter(None)
                .with_operation(op)
                .with_permission_type(1),
        );
    }
    let resp = Client::connect(bootstrap)?.call(&req, 3)?;
    let mut rows = Vec::new();
    for f in &resp.filter_results {
        if f.error_code != 0 {
            bail!(
                "{} (error {})",
                f.error_message.as_deref().unwrap_or("refused"),
                f.error_code
            );
        }
        for a in &f.matching_acls {
            rows.push(text(
                a.resource_type,
                a.resource_name.as_str(),
                a.pattern_type,
                a.principal.as_str(),
                a.host.as_str(),
                a.operation,
                a.permission_type,
            ));
        }
    }
    println!("{} ACL(s) removed", rows.len());
    print(&rows);
    Ok(())
}
