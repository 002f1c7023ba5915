//! `fjord acls`: add, list and remove ACLs, with the flags and output of Kafka's
//! `kafka-acls.sh` (`--add --allow-principal User:alice --operation Read --topic t`,
//! `--list`, `--remove`, and the `--producer`/`--consumer` shorthands).

use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args};
use fjord_controller::acl::{self, op, pattern, permission, resource, AclBinding};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::common::{usage, Connection};
use super::wire::{call, open, refused, with_broker};
use crate::output::outln;

#[derive(Args)]
#[command(group(ArgGroup::new("action").required(true).args(["add", "remove", "list"])))]
pub struct AclsArgs {
    #[command(flatten)]
    conn: Connection,
    /// Add the ACLs the other flags describe.
    #[arg(long)]
    add: bool,
    /// Remove the ACLs the other flags describe.
    #[arg(long)]
    remove: bool,
    /// List ACLs (of the given resources, or all).
    #[arg(long)]
    list: bool,
    /// With --remove: do not ask for confirmation.
    #[arg(long)]
    force: bool,
    /// Principals (User:NAME) to allow.
    #[arg(long = "allow-principal", value_name = "PRINCIPAL")]
    allow_principal: Vec<String>,
    /// Principals (User:NAME) to deny.
    #[arg(long = "deny-principal", value_name = "PRINCIPAL")]
    deny_principal: Vec<String>,
    /// With --list: only the ACLs of this principal.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Hosts the allowed principals may come from (default: every host, *).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_host: Vec<String>,
    /// Hosts the denied principals are denied from (default: every host, *).
    #[arg(long = "deny-host", value_name = "HOST")]
    deny_host: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite, CreateTokens, DescribeTokens, TwoPhaseCommit or
    /// All (the default).
    #[arg(long, value_name = "OPERATION")]
    operation: Vec<String>,
    /// Topics; * is every topic.
    #[arg(long, value_name = "TOPIC")]
    topic: Vec<String>,
    /// Consumer groups; * is every group.
    #[arg(long, value_name = "GROUP")]
    group: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
    /// Transactional ids; * is every one.
    #[arg(long = "transactional-id", value_name = "ID")]
    transactional_id: Vec<String>,
    /// Delegation tokens.
    #[arg(long = "delegation-token", value_name = "TOKEN")]
    delegation_token: Vec<String>,
    /// literal or prefixed (--add, --remove; default literal); --list and --remove also
    /// take any and match.
    #[arg(long = "resource-pattern-type", value_name = "TYPE")]
    resource_pattern_type: Option<String>,
    /// What a producer needs: Write, Describe and Create on the topics (and Write and
    /// Describe on --transactional-id).
    #[arg(long)]
    producer: bool,
    /// What a consumer needs: Read and Describe on the topics, Read on the group.
    #[arg(long)]
    consumer: bool,
}

/// One resource pattern: type, name, pattern type.
type Pattern = (i8, String, i8);

const OPERATIONS: &[(&str, i8)] = &[
    ("ALL", op::ALL),
    ("READ", op::READ),
    ("WRITE", op::WRITE),
    ("CREATE", op::CREATE),
    ("DELETE", op::DELETE),
    ("ALTER", op::ALTER),
    ("DESCRIBE", op::DESCRIBE),
    ("CLUSTER_ACTION", op::CLUSTER_ACTION),
    ("DESCRIBE_CONFIGS", op::DESCRIBE_CONFIGS),
    ("ALTER_CONFIGS", op::ALTER_CONFIGS),
    ("IDEMPOTENT_WRITE", op::IDEMPOTENT_WRITE),
    ("CREATE_TOKENS", op::CREATE_TOKENS),
    ("DESCRIBE_TOKENS", op::DESCRIBE_TOKENS),
    ("TWO_PHASE_COMMIT", op::TWO_PHASE_COMMIT),
];

fn operation_name(code: i8) -> &'static str {
    OPERATIONS
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("UNKNOWN", |(n, _)| n)
}

/// `Read`, `read`, `READ`, `DescribeConfigs` and `DESCRIBE_CONFIGS` alike.
fn parse_operation(name: &str) -> Result<i8> {
    let wanted: String = name
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_uppercase();
    OPERATIONS
        .iter()
        .find(|(n, _)| n.replace('_', "") == wanted)
        .map(|(_, c)| *c)
        .ok_or_else(|| anyhow!("unknown operation '{name}'"))
}

fn resource_name(code: i8) -> &'static str {
    match code {
        resource::TOPIC => "TOPIC",
        resource::GROUP => "GROUP",
        resource::CLUSTER => "CLUSTER",
        resource::TRANSACTIONAL_ID => "TRANSACTIONAL_ID",
        resource::DELEGATION_TOKEN => "DELEGATION_TOKEN",
        resource::USER => "USER",
        _ => "UNKNOWN",
    }
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        pattern::LITERAL => "LITERAL",
        pattern::PREFIXED => "PREFIXED",
        pattern::ANY => "ANY",
        pattern::MATCH => "MATCH",
        _ => "UNKNOWN",
    }
}

/// How kafka-acls.sh prints a resource pattern.
fn describe_pattern(p: &Pattern) -> String {
    format!(
        "ResourcePattern(resourceType={}, name={}, patternType={})",
        resource_name(p.0),
        p.1,
        pattern_name(p.2)
    )
}

/// How kafka-acls.sh prints one ACL of a resource.
fn describe_entry(principal: &str, host: &str, operation: i8, perm: i8) -> String {
    format!(
        "(principal={principal}, host={host}, operation={}, permissionType={})",
        operation_name(operation),
        if perm == permission::ALLOW {
            "ALLOW"
        } else {
            "DENY"
        }
    )
}

impl AclsArgs {
    fn pattern_type(&self) -> Result<i8> {
        let default = if self.list {
            pattern::ANY
        } else {
            pattern::LITERAL
        };
        let Some(t) = &self.resource_pattern_type else {
            return Ok(default);
        };
        let code = match t.to_ascii_lowercase().as_str() {
            "literal" => pattern::LITERAL,
            "prefixed" => pattern::PREFIXED,
            "any" => pattern::ANY,
            "match" => pattern::MATCH,
            _ => bail!("--resource-pattern-type is literal, prefixed, any or match, not '{t}'"),
        };
        if self.add && !matches!(code, pattern::LITERAL | pattern::PREFIXED) {
            bail!("--add takes --resource-pattern-type literal or prefixed");
        }
        Ok(code)
    }

    /// The resources named, with the operations each gets (the explicit ones, or those
    /// of --producer / --consumer).
    fn resources(&self) -> Result<Vec<(Pattern, Vec<i8>)>> {
        let pt = self.pattern_type()?;
        let explicit: Vec<i8> = self
            .operation
            .iter()
            .map(|o| parse_operation(o))
            .collect::<Result<_>>()?;
        let pat = |rt: i8, name: &str| -> Pattern {
            // The cluster's one resource is always a literal.
            let pt = if rt == resource::CLUSTER && pt != pattern::ANY {
                pattern::LITERAL
            } else {
                pt
            };
            (rt, name.to_string(), pt)
        };
        let mut out: Vec<(Pattern, Vec<i8>)> = Vec::new();
        if self.producer || self.consumer {
            if !explicit.is_empty() {
                bail!("--producer and --consumer set the operations: leave out --operation");
            }
            if self.topic.is_empty() {
                bail!("--producer and --consumer need --topic");
            }
            for t in &self.topic {
                let mut ops = Vec::new();
                if self.producer {
                    ops.extend([op::WRITE, op::DESCRIBE, op::CREATE]);
                }
                if self.consumer {
                    ops.extend([op::READ, op::DESCRIBE]);
                }
                let mut seen = BTreeSet::new();
                ops.retain(|o| seen.insert(*o));
                out.push((pat(resource::TOPIC, t), ops));
            }
            if self.consumer {
                if self.group.is_empty() {
                    bail!("--consumer needs --group");
                }
                for g in &self.group {
                    out.push((pat(resource::GROUP, g), vec![op::READ]));
                }
            }
            if self.producer {
                for t in &self.transactional_id {
                    out.push((
                        pat(resource::TRANSACTIONAL_ID, t),
                        vec![op::WRITE, op::DESCRIBE],
                    ));
                }
            }
            return Ok(out);
        }
        let ops = if explicit.is_empty() {
            vec![op::ALL]
        } else {
            explicit
        };
        let named = [
            (resource::TOPIC, &self.topic),
            (resource::GROUP, &self.group),
            (resource::TRANSACTIONAL_ID, &self.transactional_id),
            (resource::DELEGATION_TOKEN, &self.delegation_token),
        ];
        for (rt, names) in named {
            for n in names {
                out.push((pat(rt, n), ops.clone()));
            }
        }
        if self.cluster {
            out.push((pat(resource::CLUSTER, acl::CLUSTER_NAME), ops.clone()));
        }
        // Kafka refuses an operation the resource type does not have.
        for ((rt, _, _), ops) in &out {
            let valid = acl::operations_of(*rt);
            if let Some(bad) = ops.iter().find(|o| **o != op::ALL && !valid.contains(o)) {
                let names: Vec<&str> = valid.iter().map(|o| operation_name(*o)).collect();
                bail!(
                    "ResourceType {} only supports operations {},ALL, not {}",
                    resource_name(*rt),
                    names.join(","),
                    operation_name(*bad)
                );
            }
        }
        Ok(out)
    }

    /// The (principal, host, permission) triples the flags give.
    fn entries(&self) -> Vec<(String, String, i8)> {
        let hosts = |given: &[String]| {
            if given.is_empty() {
                vec![acl::WILDCARD.to_string()]
            } else {
                given.to_vec()
            }
        };
        let mut out = Vec::new();
        for p in &self.allow_principal {
            for h in hosts(&self.allow_host) {
                out.push((p.clone(), h, permission::ALLOW));
            }
        }
        for p in &self.deny_principal {
            for h in hosts(&self.deny_host) {
                out.push((p.clone(), h, permission::DENY));
            }
        }
        out
    }
}

pub fn run(args: AclsArgs) -> Result<ExitCode> {
    let resources = match args.resources() {
        Ok(r) => r,
        Err(e) => return usage(e.to_string()),
    };
    if args.list {
        return list(&args, &resources);
    }
    if resources.is_empty() {
        return usage("name a resource: --topic, --group, --cluster, --transactional-id or --delegation-token");
    }
    let entries = args.entries();
    if args.add && entries.is_empty() {
        return usage("--add needs --allow-principal or --deny-principal");
    }
    for (p, _, _) in &entries {
        if !p
            .split_once(':')
            .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
        {
            return usage(format!("'{p}' is not a principal: write User:NAME"));
        }
    }
    if args.add {
        add(&args, &resources, &entries)
    } else {
        remove(&args, &resources, &entries)
    }
}

fn add(
    args: &AclsArgs,
    resources: &[(Pattern, Vec<i8>)],
    entries: &[(String, String, i8)],
) -> Result<ExitCode> {
    let mut creations = Vec::new();
    for (p, ops) in resources {
        outln!("Adding ACLs for resource `{}`: ", describe_pattern(p))?;
        for (principal, host, perm) in entries {
            for o in ops {
                outln!(" \t{} ", describe_entry(principal, host, *o, *perm))?;
                creations.push(
                    AclCreation::default()
                        .with_resource_type(p.0)
                        .with_resource_name(StrBytes::from_string(p.1.clone()))
                        .with_resource_pattern_type(p.2)
                        .with_principal(StrBytes::from_string(principal.clone()))
                        .with_host(StrBytes::from_string(host.clone()))
                        .with_operation(*o)
                        .with_permission_type(*perm),
                );
            }
        }
        outln!()?;
    }
    let resp: CreateAclsResponse = with_broker(&args.conn.bootstrap_server, |server| {
        let mut s = open(&args.conn, server)?;
        call(
            &mut s,
            1,
            CreateAclsRequest::default().with_creations(creations.clone()),
            3,
        )
    })?;
    for r in &resp.results {
        refused("cannot add the ACLs", r.error_code, &r.error_message)?;
    }
    print_current(args, resources)?;
    Ok(ExitCode::SUCCESS)
}

fn remove(
    args: &AclsArgs,
    resources: &[(Pattern, Vec<i8>)],
    entries: &[(String, String, i8)],
) -> Result<ExitCode> {
    let mut filters = Vec::new();
    for (p, ops) in resources {
        // No principal given: every ACL of the resource goes.
        let selected: Vec<(Option<String>, Option<String>, i8)> = if entries.is_empty() {
            vec![(None, None, permission::ANY)]
        } else {
            entries
                .iter()
                .map(|(pr, h, perm)| (Some(pr.clone()), Some(h.clone()), *perm))
                .collect()
        };
        let ops: Vec<i8> = if args.operation.is_empty() && !args.producer && !args.consumer {
            vec![op::ANY]
        } else {
            ops.clone()
        };
        if !args.force {
            let what = if entries.is_empty() {
                "all ACLs".to_string()
            } else {
                let list: Vec<String> = entries
                    .iter()
                    .flat_map(|(pr, h, perm)| {
                        ops.iter().map(move |o| describe_entry(pr, h, *o, *perm))
                    })
                    .collect();
                format!("ACLs: \n \t{} \n", list.join("\n \t"))
            };
            outln!(
                "Are you sure you want to remove {what} from resource filter `{}`? (y/n)",
                describe_pattern(p)
            )?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !answer.trim().eq_ignore_ascii_case("y") {
                continue;
            }
        }
        for (principal, host, perm) in &selected {
            for o in &ops {
                filters.push(
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(p.0)
                        .with_resource_name_filter(Some(StrBytes::from_string(p.1.clone())))
                        .with_pattern_type_filter(p.2)
                        .with_principal_filter(principal.clone().map(StrBytes::from_string))
                        .with_host_filter(host.clone().map(StrBytes::from_string))
                        .with_operation(*o)
                        .with_permission_type(*perm),
                );
            }
        }
    }
    if filters.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let resp: DeleteAclsResponse = with_broker(&args.conn.bootstrap_server, |server| {
        let mut s = open(&args.conn, server)?;
        call(
            &mut s,
            1,
            DeleteAclsRequest::default().with_filters(filters.clone()),
            3,
        )
    })?;
    for r in &resp.filter_results {
        refused("cannot remove the ACLs", r.error_code, &r.error_message)?;
    }
    print_current(args, resources)?;
    Ok(ExitCode::SUCCESS)
}

/// The ACLs matching a filter, grouped by resource pattern.
fn describe_acls(
    args: &AclsArgs,
    filter: DescribeAclsRequest,
) -> Result<Vec<(Pattern, Vec<AclBinding>)>> {
    let resp: DescribeAclsResponse = with_broker(&args.conn.bootstrap_server, |server| {
        let mut s = open(&args.conn, server)?;
        call(&mut s, 1, filter.clone(), 3)
    })?;
    refused("cannot list the ACLs", resp.error_code, &resp.error_message)?;
    Ok(resp
        .resources
        .iter()
        .map(|r| {
            let p: Pattern = (r.resource_type, r.resource_name.to_string(), r.pattern_type);
            let acls = r
                .acls
                .iter()
                .map(|a| AclBinding {
                    resource_type: p.0,
                    resource_name: p.1.clone(),
                    pattern_type: p.2,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
                .collect();
            (p, acls)
        })
        .collect())
}

fn print_resource(p: &Pattern, acls: &[AclBinding]) -> Result<()> {
    outln!("Current ACLs for resource `{}`: ", describe_pattern(p))?;
    for a in acls {
        outln!(
            " \t{} ",
            describe_entry(&a.principal, &a.host, a.operation, a.permission)
        )?;
    }
    outln!()?;
    Ok(())
}

/// After --add or --remove, as kafka-acls.sh: each resource's ACLs now.
fn print_current(args: &AclsArgs, resources: &[(Pattern, Vec<i8>)]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (p, _) in resources {
        if !seen.insert(p.clone()) {
            continue;
        }
        let exact = DescribeAclsRequest::default()
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(p.0)
            .with_resource_name_filter(Some(StrBytes::from_string(p.1.clone())))
            .with_pattern_type_filter(p.2)
            .with_operation(op::ANY)
            .with_permission_type(permission::ANY);
        let found = describe_acls(args, exact)?;
        let acls: Vec<AclBinding> = found.into_iter().flat_map(|(_, a)| a).collect();
        print_resource(p, &acls)?;
    }
    Ok(())
}

fn list(args: &AclsArgs, resources: &[(Pattern, Vec<i8>)]) -> Result<ExitCode> {
    // The protocol's defaults are empty strings, which match nothing: None matches all.
    let base = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_principal_filter(args.principal.clone().map(StrBytes::from_string))
        .with_operation(op::ANY)
        .with_permission_type(permission::ANY);
    let requests: Vec<DescribeAclsRequest> = if resources.is_empty() {
        vec![base
            .with_resource_type_filter(resource::ANY)
            .with_pattern_type_filter(pattern::ANY)]
    } else {
        resources
            .iter()
            .map(|(p, _)| {
                base.clone()
                    .with_resource_type_filter(p.0)
                    .with_resource_name_filter(Some(StrBytes::from_string(p.1.clone())))
                    .with_pattern_type_filter(p.2)
            })
            .collect()
    };
    for r in requests {
        for (p, acls) in describe_acls(args, r)? {
            print_resource(&p, &acls)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_read_as_kafka_acls_sh_writes_them() {
        assert_eq!(parse_operation("Read").unwrap(), op::READ);
        assert_eq!(
            parse_operation("DescribeConfigs").unwrap(),
            op::DESCRIBE_CONFIGS
        );
        assert_eq!(
            parse_operation("IDEMPOTENT_WRITE").unwrap(),
            op::IDEMPOTENT_WRITE
        );
        assert_eq!(parse_operation("all").unwrap(), op::ALL);
        assert!(parse_operation("Fly").is_err());
        assert_eq!(
            describe_pattern(&(resource::TOPIC, "t".into(), pattern::LITERAL)),
            "ResourcePattern(resourceType=TOPIC, name=t, patternType=LITERAL)"
        );
        assert_eq!(
            describe_entry("User:alice", "*", op::READ, permission::ALLOW),
            "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)"
        );
    }
}
