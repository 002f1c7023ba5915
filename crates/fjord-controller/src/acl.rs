//! Access control lists as Kafka's StandardAuthorizer keeps them: each ACL allows or
//! denies one principal, from one host, one operation on a resource (a literal name, `*`,
//! or a name prefix). They are metadata records, so every broker enforces the same set.
//!
//! The codes are Kafka's (ResourceType, PatternType, AclOperation, AclPermissionType),
//! as the CreateAcls, DescribeAcls and DeleteAcls APIs carry them.

use serde::{Deserialize, Serialize};

/// Kafka's ResourceType codes.
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
    pub const DELEGATION_TOKEN: i8 = 6;
    pub const USER: i8 = 7;
}

/// Kafka's PatternType codes.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's AclOperation codes.
pub mod op {
    pub const ANY: i8 = 1;
    pub const ALL: i8 = 2;
    pub const READ: i8 = 3;
    pub const WRITE: i8 = 4;
    pub const CREATE: i8 = 5;
    pub const DELETE: i8 = 6;
    pub const ALTER: i8 = 7;
    pub const DESCRIBE: i8 = 8;
    pub const CLUSTER_ACTION: i8 = 9;
    pub const DESCRIBE_CONFIGS: i8 = 10;
    pub const ALTER_CONFIGS: i8 = 11;
    pub const IDEMPOTENT_WRITE: i8 = 12;
    pub const CREATE_TOKENS: i8 = 13;
    pub const DESCRIBE_TOKENS: i8 = 14;
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// Kafka's AclPermissionType codes.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The one name a cluster resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name or principal that matches every name.
pub const WILDCARD: &str = "*";

/// One ACL (Kafka's AclBinding / AccessControlEntryRecord).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// A DescribeAcls or DeleteAcls filter: `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

/// Why a binding cannot be stored, in Kafka's words.
pub fn validate(b: &AclBinding) -> Result<(), String> {
    let known_resource = matches!(
        b.resource_type,
        resource::TOPIC
            | resource::GROUP
            | resource::CLUSTER
            | resource::TRANSACTIONAL_ID
            | resource::DELEGATION_TOKEN
            | resource::USER
    );
    if !known_resource {
        return Err("Invalid resource type".into());
    }
    if !matches!(b.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
        return Err("Invalid pattern type: ACLs are literal or prefixed".into());
    }
    if b.resource_name.is_empty() {
        return Err("Resource name should not be empty".into());
    }
    if b.resource_type == resource::CLUSTER && b.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if b.pattern_type == pattern::PREFIXED && b.resource_name == WILDCARD {
        return Err("A prefixed ACL cannot use the wildcard name".into());
    }
    if !(op::ALL..=op::TWO_PHASE_COMMIT).contains(&b.operation) {
        return Err("Invalid operation".into());
    }
    if !matches!(b.permission, permission::ALLOW | permission::DENY) {
        return Err("Invalid permission type".into());
    }
    match b.principal.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
        _ => {
            return Err(format!(
                "Could not parse principal from `{}` (no colon is present separating the \
                 principal type from the principal name)",
                b.principal
            ))
        }
    }
    if b.host.is_empty() {
        return Err("Invalid host: use * for every host".into());
    }
    Ok(())
}

impl AclFilter {
    /// Whether `b` is one of the bindings this filter selects (DescribeAcls, DeleteAcls).
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource_ok =
            self.resource_type == resource::ANY || self.resource_type == b.resource_type;
        let name_ok = match (&self.resource_name, self.pattern_type) {
            (None, _) => pattern_type_ok(self.pattern_type, b.pattern_type),
            (Some(name), pattern::MATCH) => name_matches(b, name),
            (Some(name), pattern::ANY) => &b.resource_name == name,
            (Some(name), p) => p == b.pattern_type && &b.resource_name == name,
        };
        let principal_ok = self.principal.as_ref().is_none_or(|p| p == &b.principal);
        let host_ok = self.host.as_ref().is_none_or(|h| h == &b.host);
        let op_ok = self.operation == op::ANY || self.operation == b.operation;
        let perm_ok = self.permission == permission::ANY || self.permission == b.permission;
        resource_ok && name_ok && principal_ok && host_ok && op_ok && perm_ok
    }

    /// A filter that matches nothing that could be stored is refused, as Kafka does.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type == 0
            || self.pattern_type == 0
            || self.operation == 0
            || self.permission == 0
        {
            return Err("The filter has an UNKNOWN field".into());
        }
        Ok(())
    }
}

fn pattern_type_ok(filter: i8, stored: i8) -> bool {
    matches!(filter, pattern::ANY | pattern::MATCH) || filter == stored
}

/// Whether a binding's resource pattern covers the resource named `name`.
fn name_matches(b: &AclBinding, name: &str) -> bool {
    match b.pattern_type {
        pattern::LITERAL => b.resource_name == name || b.resource_name == WILDCARD,
        pattern::PREFIXED => name.starts_with(&b.resource_name),
        _ => false,
    }
}

/// Operations an ALLOW of `granted` also allows (Kafka: reading, writing, deleting or
/// altering a resource lets one describe it; altering its configs lets one describe them).
fn implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || granted == op::ALL
        || (wanted == op::DESCRIBE
            && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

/// Who asks, from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// StandardAuthorizer's decision for one operation on one resource: a matching DENY wins;
/// otherwise a matching ALLOW (directly or by implication) allows. With no ACL at all on
/// the resource, `allow_if_none` decides (`allow.everyone.if.no.acl.found`).
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    who: Requester<'_>,
    operation: i8,
    resource_type: i8,
    name: &str,
    allow_if_none: bool,
) -> bool {
    let mut any_for_resource = false;
    let mut allowed = false;
    for b in acls {
        if b.resource_type != resource_type || !name_matches(b, name) {
            continue;
        }
        any_for_resource = true;
        let principal_ok = b.principal == who.principal || b.principal == "User:*";
        let host_ok = b.host == WILDCARD || b.host == who.host;
        if !principal_ok || !host_ok {
            continue;
        }
        match b.permission {
            permission::DENY if b.operation == operation || b.operation == op::ALL => return false,
            permission::ALLOW if implies(b.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_for_resource && allow_if_none)
}

/// The operations of a resource type that the authorized-operations masks report
/// (Kafka's per-type supported operations), in code order.
pub fn operations_of(resource_type: i8) -> &'static [i8] {
    match resource_type {
        resource::TOPIC => &[
            op::READ,
            op::WRITE,
            op::CREATE,
            op::DELETE,
            op::ALTER,
            op::DESCRIBE,
            op::DESCRIBE_CONFIGS,
            op::ALTER_CONFIGS,
        ],
        resource::GROUP => &[op::READ, op::DELETE, op::DESCRIBE],
        resource::CLUSTER => &[
            op::CREATE,
            op::ALTER,
            op::DESCRIBE,
            op::CLUSTER_ACTION,
            op::DESCRIBE_CONFIGS,
            op::ALTER_CONFIGS,
            op::IDEMPOTENT_WRITE,
            op::CREATE_TOKENS,
            op::DESCRIBE_TOKENS,
        ],
        resource::TRANSACTIONAL_ID => &[op::WRITE, op::DESCRIBE, op::TWO_PHASE_COMMIT],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, principal: &str, host: &str, o: i8, p: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation: o,
            permission: p,
        }
    }

    fn can(acls: &[AclBinding], who: &str, host: &str, o: i8, rt: i8, name: &str) -> bool {
        authorize(
            acls,
            Requester {
                principal: who,
                host,
            },
            o,
            rt,
            name,
            false,
        )
    }

    #[test]
    fn allow_deny_prefix_wildcard_and_implication() {
        use pattern::{LITERAL, PREFIXED};
        use permission::{ALLOW, DENY};
        use resource::{GROUP, TOPIC};
        let acls = vec![
            acl(TOPIC, "orders", LITERAL, "User:alice", "*", op::READ, ALLOW),
            acl(TOPIC, "logs-", PREFIXED, "User:bob", "*", op::WRITE, ALLOW),
            acl(
                TOPIC,
                "logs-secret",
                LITERAL,
                "User:bob",
                "*",
                op::ALL,
                DENY,
            ),
            acl(
                TOPIC,
                "*",
                LITERAL,
                "User:carol",
                "10.0.0.1",
                op::DESCRIBE,
                ALLOW,
            ),
            acl(GROUP, "g", LITERAL, "User:*", "*", op::READ, ALLOW),
        ];
        assert!(can(
            &acls,
            "User:alice",
            "1.2.3.4",
            op::READ,
            TOPIC,
            "orders"
        ));
        // READ implies DESCRIBE, not WRITE.
        assert!(can(
            &acls,
            "User:alice",
            "1.2.3.4",
            op::DESCRIBE,
            TOPIC,
            "orders"
        ));
        assert!(!can(
            &acls,
            "User:alice",
            "1.2.3.4",
            op::WRITE,
            TOPIC,
            "orders"
        ));
        // Deny by default: alice has nothing on logs-a.
        assert!(!can(
            &acls,
            "User:alice",
            "1.2.3.4",
            op::READ,
            TOPIC,
            "logs-a"
        ));
        assert!(can(
            &acls,
            "User:bob",
            "1.2.3.4",
            op::WRITE,
            TOPIC,
            "logs-a"
        ));
        // Deny beats allow.
        assert!(!can(
            &acls,
            "User:bob",
            "1.2.3.4",
            op::WRITE,
            TOPIC,
            "logs-secret"
        ));
        // Host matching and the wildcard resource.
        assert!(can(
            &acls,
            "User:carol",
            "10.0.0.1",
            op::DESCRIBE,
            TOPIC,
            "anything"
        ));
        assert!(!can(
            &acls,
            "User:carol",
            "10.0.0.2",
            op::DESCRIBE,
            TOPIC,
            "anything"
        ));
        // The wildcard principal.
        assert!(can(&acls, "User:zed", "1.2.3.4", op::READ, GROUP, "g"));
        assert!(!can(&acls, "User:zed", "1.2.3.4", op::DELETE, GROUP, "g"));
        // No ACL on the resource: allow.everyone.if.no.acl.found decides.
        let who = Requester {
            principal: "User:x",
            host: "h",
        };
        assert!(authorize(&acls, who, op::READ, GROUP, "other", true));
        assert!(!authorize(&acls, who, op::READ, GROUP, "other", false));
        assert!(!authorize(&acls, who, op::READ, TOPIC, "orders", true));
    }

    #[test]
    fn filters_select_as_describe_and_delete_do() {
        let b = acl(
            resource::TOPIC,
            "logs-",
            pattern::PREFIXED,
            "User:bob",
            "*",
            op::WRITE,
            permission::ALLOW,
        );
        let mut f = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: op::ANY,
            permission: permission::ANY,
        };
        assert!(f.matches(&b));
        f.resource_name = Some("logs-1".into());
        f.pattern_type = pattern::MATCH;
        assert!(f.matches(&b));
        f.pattern_type = pattern::LITERAL;
        assert!(!f.matches(&b));
        f.resource_name = Some("logs-".into());
        f.pattern_type = pattern::PREFIXED;
        assert!(f.matches(&b));
        f.principal = Some("User:alice".into());
        assert!(!f.matches(&b));
        assert!(validate(&b).is_ok());
        let mut bad = b.clone();
        bad.principal = "bob".into();
        assert!(validate(&bad).is_err());
        bad = b.clone();
        bad.resource_type = resource::CLUSTER;
        assert!(validate(&bad).is_err());
    }
}
