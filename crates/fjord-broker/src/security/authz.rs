//! One request's authorization: who asks (principal and host), the ACLs of the metadata
//! image the request started with, and the broker's `super.users` and
//! `allow.everyone.if.no.acl.found`. Without `authorizer.class.name` everything is
//! allowed, at the cost of one branch.

use std::sync::{Arc, OnceLock};

use fjord_controller::acl::{self, op, resource, Requester};
use fjord_controller::MetadataImage;
use uuid::Uuid;

use super::Session;
use crate::state::BrokerState;

pub struct Authz {
    enabled: bool,
    super_user: bool,
    principal: Arc<str>,
    host: String,
    image: Arc<MetadataImage>,
    allow_if_no_acl: bool,
}

impl Authz {
    pub fn new(state: &BrokerState, session: &Session) -> Authz {
        let security = &state.config.security;
        let enabled = security.authorizer;
        Authz {
            enabled,
            super_user: enabled
                && security
                    .super_users
                    .iter()
                    .any(|u| u.as_str() == &*session.principal),
            principal: session.principal.clone(),
            host: session.peer.ip().to_string(),
            // Without an authorizer no ACL is read: an empty image, shared, costs nothing.
            image: if enabled {
                state.controller.image()
            } else {
                static EMPTY: OnceLock<Arc<MetadataImage>> = OnceLock::new();
                EMPTY.get_or_init(Default::default).clone()
            },
            allow_if_no_acl: security.allow_if_no_acl,
        }
    }

    /// Whether ACLs are enforced at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the requester may do `operation` on the resource.
    pub fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        if !self.enabled || self.super_user {
            return true;
        }
        acl::authorize(
            self.image.acls.values(),
            self.requester(),
            operation,
            resource_type,
            name,
            self.allow_if_no_acl,
        )
    }

    pub fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, resource::CLUSTER, acl::CLUSTER_NAME)
    }

    pub fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TOPIC, name)
    }

    pub fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::GROUP, name)
    }

    pub fn transactional_id(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, resource::TRANSACTIONAL_ID, name)
    }

    /// Whether some ACL lets the requester write to some topic (Kafka lets such a
    /// principal be an idempotent producer without IDEMPOTENT_WRITE on the cluster).
    pub fn writes_some_topic(&self) -> bool {
        if !self.enabled || self.super_user {
            return true;
        }
        let who = self.requester();
        self.image.acls.values().any(|b| {
            b.resource_type == resource::TOPIC
                && b.permission == acl::permission::ALLOW
                && matches!(b.operation, op::WRITE | op::ALL)
                && (b.principal == who.principal || b.principal == "User:*")
                && (b.host == acl::WILDCARD || b.host == who.host)
                && acl::authorize(
                    self.image.acls.values(),
                    who,
                    op::WRITE,
                    resource::TOPIC,
                    &b.resource_name,
                    false,
                )
        })
    }

    /// The authorized-operations mask of a resource (bit n for operation code n), as
    /// Metadata, DescribeCluster and the group descriptions report it.
    pub fn operations(&self, resource_type: i8, name: &str) -> i32 {
        acl::operations_of(resource_type)
            .iter()
            .filter(|&&o| self.allows(o, resource_type, name))
            .fold(0, |mask, &o| mask | (1 << o))
    }

    /// Whether the topic exists (in the metadata the request started with).
    pub fn topic_exists(&self, name: &str) -> bool {
        self.image.topics.contains_key(name)
    }

    /// A topic's name, given by name or (newer requests) by id; an unknown id has none.
    pub fn topic_name(&self, name: &str, id: Uuid) -> String {
        if !name.is_empty() || id.is_nil() {
            return name.to_string();
        }
        self.image.topic_names.get(&id).cloned().unwrap_or_default()
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: &self.host,
        }
    }
}
