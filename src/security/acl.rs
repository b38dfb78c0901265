//! Kafka's ACL model (KIP-290 patterns; StandardAuthorizer's rules): bindings of (resource
//! type, name, literal or prefixed pattern) to (principal, host, operation, allow or deny),
//! filters that select them, and the decision.
//!
//! Invariant: a decision depends only on the bindings, `super.users` and
//! `allow.everyone.if.no.acl.found`: super users may do everything; any matching DENY wins;
//! a matching ALLOW (of the operation, of ALL, or of an operation that implies it) allows;
//! a resource no binding names follows `allow.everyone.if.no.acl.found`; anything else is
//! denied.

use serde::{Deserialize, Serialize};

/// Kafka's resource type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// Literal (a name, or `*` for every name) or prefixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    pub const EVERY: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        Self::EVERY.into_iter().find(|o| o.code() == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::EVERY.into_iter().find(|o| o.name() == s)
    }

    /// Whether an ALLOW of `self` allows `op` (ALL allows everything; READ, WRITE, DELETE
    /// and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    fn allows(self, op: Operation) -> bool {
        self == op
            || self == Operation::All
            || (op == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (op == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    /// Whether a DENY of `self` denies `op`.
    fn denies(self, op: Operation) -> bool {
        self == op || self == Operation::All
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `User:alice`, or `User:*` for every principal.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    fn names(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(self.name.as_str()),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == "*")
    }

    /// Checks a binding a client asks to create: Kafka's error message if it is invalid.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("the resource name is empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.name != "kafka-cluster" {
            return Err("the cluster resource is named kafka-cluster".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err(format!("principal {:?} is not TYPE:NAME", self.principal)),
        }
        if self.host.is_empty() {
            return Err("the host is empty (use * for any)".into());
        }
        if self.name.len() + self.principal.len() + self.host.len() > 4096 {
            return Err("binding too long".into());
        }
        Ok(())
    }
}

/// What DescribeAcls and DeleteAcls select: `None` (or ANY) matches every value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    /// `None`: ANY. `Some(None)`: MATCH (every binding that would apply to `name`).
    pub pattern: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.name, self.pattern) {
            (None, Some(Some(p))) => b.pattern == p,
            (None, _) => true,
            (Some(n), Some(Some(p))) => b.pattern == p && b.name == *n,
            (Some(n), Some(None)) => b.names(b.resource_type, n),
            (Some(n), None) => b.name == *n,
        };
        self.resource_type.is_none_or(|r| r == b.resource_type)
            && name_ok
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    /// `super.users`: principals that may do everything.
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// Whether `principal` connecting from `host` may do `op` on the resource.
pub fn authorize(
    cfg: &AuthorizerConfig,
    acls: &[AclBinding],
    principal: &str,
    host: &str,
    op: Operation,
    rt: ResourceType,
    name: &str,
) -> bool {
    if !cfg.enabled || cfg.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let mut named = false;
    let mut allowed = false;
    for b in acls.iter().filter(|b| b.names(rt, name)) {
        named = true;
        if !b.applies_to(principal, host) {
            continue;
        }
        match b.permission {
            Permission::Deny if b.operation.denies(op) => return false,
            Permission::Allow if b.operation.allows(op) => allowed = true,
            _ => {}
        }
    }
    allowed || (!named && cfg.allow_if_no_acl)
}

/// Whether any ACL lets `principal` do `op` on some resource of type `rt` (Kafka's check for
/// InitProducerId without a transactional id: WRITE on any topic).
pub fn allows_any(
    cfg: &AuthorizerConfig,
    acls: &[AclBinding],
    principal: &str,
    host: &str,
    op: Operation,
    rt: ResourceType,
) -> bool {
    if !cfg.enabled || cfg.super_users.iter().any(|s| s == principal) {
        return true;
    }
    acls.iter().any(|b| {
        b.resource_type == rt
            && b.permission == Permission::Allow
            && b.applies_to(principal, host)
            && b.operation.allows(op)
            && !acls.iter().any(|d| {
                d.permission == Permission::Deny
                    && d.resource_type == rt
                    && d.applies_to(principal, host)
                    && d.operation.denies(op)
                    && d.pattern == PatternType::Literal
                    && d.name == "*"
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn kafka_rules() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let cfg = AuthorizerConfig {
            enabled: true,
            super_users: vec!["User:admin".into()],
            allow_if_no_acl: false,
        };
        let acls = vec![
            acl(Topic, "orders-", Prefixed, "User:alice", Write, Allow),
            acl(Topic, "orders-secret", Literal, "User:alice", All, Deny),
            acl(Topic, "public", Literal, "User:*", Read, Allow),
            acl(Group, "*", Literal, "User:alice", Read, Allow),
        ];
        let a = |p: &str, op, rt, n: &str| authorize(&cfg, &acls, p, "10.0.0.1", op, rt, n);
        assert!(a("User:alice", Write, Topic, "orders-eu"));
        assert!(
            a("User:alice", Describe, Topic, "orders-eu"),
            "WRITE implies DESCRIBE"
        );
        assert!(!a("User:alice", Read, Topic, "orders-eu"));
        assert!(!a("User:alice", Write, Topic, "orders-secret"), "deny wins");
        assert!(!a("User:alice", Describe, Topic, "orders-secret"));
        assert!(
            a("User:bob", Read, Topic, "public"),
            "User:* matches everyone"
        );
        assert!(!a("User:bob", Write, Topic, "public"));
        assert!(
            !a("User:bob", Write, Topic, "nobody-named-it"),
            "no ACL: denied by default"
        );
        assert!(
            a("User:alice", Read, Group, "any-group"),
            "literal * is every name"
        );
        assert!(
            a("User:admin", Alter, Cluster, "kafka-cluster"),
            "super user"
        );
        let open = AuthorizerConfig {
            allow_if_no_acl: true,
            ..cfg.clone()
        };
        assert!(authorize(
            &open,
            &acls,
            "User:bob",
            "h",
            Write,
            Topic,
            "nobody-named-it"
        ));
        assert!(!authorize(
            &open, &acls, "User:bob", "h", Write, Topic, "public"
        ));
        assert!(allows_any(&cfg, &acls, "User:alice", "h", Write, Topic));
        assert!(!allows_any(&cfg, &acls, "User:bob", "h", Write, Topic));
        let host_bound = vec![AclBinding {
            host: "10.0.0.9".into(),
            ..acl(Topic, "t", Literal, "User:bob", Read, Allow)
        }];
        assert!(!authorize(
            &cfg,
            &host_bound,
            "User:bob",
            "10.0.0.1",
            Read,
            Topic,
            "t"
        ));
        assert!(authorize(
            &cfg,
            &host_bound,
            "User:bob",
            "10.0.0.9",
            Read,
            Topic,
            "t"
        ));
    }

    #[test]
    fn filters() {
        let b = acl(
            ResourceType::Topic,
            "orders-",
            PatternType::Prefixed,
            "User:alice",
            Operation::Write,
            Permission::Allow,
        );
        let any = AclFilter {
            resource_type: None,
            name: None,
            pattern: None,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        assert!(any.matches(&b));
        let matching = AclFilter {
            name: Some("orders-eu".into()),
            pattern: Some(None),
            ..any.clone()
        };
        assert!(matching.matches(&b));
        let literal = AclFilter {
            name: Some("orders-eu".into()),
            pattern: Some(Some(PatternType::Literal)),
            ..any.clone()
        };
        assert!(!literal.matches(&b));
        let other = AclFilter {
            principal: Some("User:bob".into()),
            ..any
        };
        assert!(!other.matches(&b));
    }
}
