//! CreateAcls, DescribeAcls and DeleteAcls: the ACLs of `kafka-acls.sh`, `fjord acls` and
//! the Admin clients, kept as metadata records. Without an authorizer
//! (`authorizer.class.name`) they answer SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;

use fjord_controller::acl::{self, AclBinding, AclFilter};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

const DISABLED: &str = "No Authorizer is configured on the broker";

/// v0 knows no pattern types: its names are literal, and its filters match them.
fn pattern_of(version: i16, given: i8) -> i8 {
    if version == 0 {
        acl::pattern::LITERAL
    } else {
        given
    }
}

pub fn create(state: &BrokerState, req: CreateAclsRequest, version: i16) -> CreateAclsResponse {
    let refuse = |code_: i16, message: String| {
        AclCreationResult::default()
            .with_error_code(code_)
            .with_error_message(Some(str(message)))
    };
    if !state.config.security.authorizer {
        let results = req
            .creations
            .iter()
            .map(|_| refuse(code::SECURITY_DISABLED, DISABLED.into()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let bindings: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            let b = AclBinding {
                resource_type: c.resource_type,
                resource_name: c.resource_name.to_string(),
                pattern_type: pattern_of(version, c.resource_pattern_type),
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: c.operation,
                permission: c.permission_type,
            };
            acl::validate(&b).map(|()| b)
        })
        .collect();
    let valid: Vec<AclBinding> = bindings.iter().filter_map(|b| b.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        state.controller.create_acls(valid)
    };
    let results = bindings
        .into_iter()
        .map(|b| match (b, &stored) {
            (Err(why), _) => refuse(code::INVALID_REQUEST, why),
            (Ok(_), Err(e)) => refuse(e.kafka_code(), e.to_string()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A filter as the request gives it, `None` for each absent field.
fn filter_of(
    version: i16,
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal_host: (Option<&str>, Option<&str>),
    operation_permission: (i8, i8),
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.map(str::to_string),
        pattern_type: if version == 0 {
            acl::pattern::LITERAL
        } else {
            pattern_type
        },
        principal: principal_host.0.map(str::to_string),
        host: principal_host.1.map(str::to_string),
        operation: operation_permission.0,
        permission: operation_permission.1,
    }
}

pub fn describe(
    state: &BrokerState,
    req: DescribeAclsRequest,
    version: i16,
) -> DescribeAclsResponse {
    if !state.config.security.authorizer {
        return DescribeAclsResponse::default()
            .with_error_code(code::SECURITY_DISABLED)
            .with_error_message(Some(str(DISABLED)));
    }
    let filter = filter_of(
        version,
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        (req.principal_filter.as_deref(), req.host_filter.as_deref()),
        (req.operation, req.permission_type),
    );
    if let Err(why) = filter.validate() {
        return DescribeAclsResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_error_message(Some(str(why)));
    }
    let image = state.controller.image();
    // One entry per resource pattern, its ACLs under it, as Kafka groups them.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.values().filter(|b| filter.matches(b)) {
        by_resource
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str(b.principal.clone()))
                    .with_host(str(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(str(name))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub fn delete(state: &BrokerState, req: DeleteAclsRequest, version: i16) -> DeleteAclsResponse {
    let refuse = |code_: i16, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code_)
            .with_error_message(Some(str(message)))
    };
    if !state.config.security.authorizer {
        let results = req
            .filters
            .iter()
            .map(|_| refuse(code::SECURITY_DISABLED, DISABLED))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .map(|f| {
            filter_of(
                version,
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                (f.principal_filter.as_deref(), f.host_filter.as_deref()),
                (f.operation, f.permission_type),
            )
        })
        .collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .filter(|f| f.validate().is_ok())
        .cloned()
        .collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        state.controller.delete_acls(valid)
    };
    let mut deleted = match deleted {
        Ok(d) => d.into_iter(),
        Err(e) => {
            let results = filters
                .iter()
                .map(|_| refuse(e.kafka_code(), &e.to_string()))
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = filters
        .iter()
        .map(|f| match f.validate() {
            Err(why) => refuse(code::INVALID_REQUEST, &why),
            Ok(()) => {
                let matching = deleted
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(str(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(str(b.principal))
                            .with_host(str(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission)
                    })
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(matching)
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
