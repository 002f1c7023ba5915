//! `fjord configs`: describe and change topic, broker and group configs, and users' SCRAM
//! credentials, with the flags of Kafka's `kafka-configs.sh` (`--entity-type`/
//! `--entity-name`, or the `--topic`/`--broker`/`--group` shorthands). The cluster-wide broker default
//! (`--entity-default`) is out of reach: librdkafka addresses a broker resource only by a
//! numeric id.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{ArgGroup, Args};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use super::admin::{Admin, ConfigOp, Resource};
use super::common::{self, check_reachable, create_error, usage, Connection};
use crate::output::outln;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("action").required(true).args(["describe", "alter"])))]
pub struct ConfigsArgs {
    #[command(flatten)]
    conn: Connection,
    /// Show configs.
    #[arg(long)]
    describe: bool,
    /// Change configs (with --add-config and/or --delete-config).
    #[arg(long)]
    alter: bool,
    /// topics, brokers, groups or users (SCRAM credentials).
    #[arg(long = "entity-type", value_name = "TYPE", value_parser = ["topics", "brokers", "groups", "users"])]
    entity_type: Option<String>,
    /// The topic name, broker id or group id.
    #[arg(long = "entity-name", value_name = "NAME")]
    entity_name: Option<String>,
    /// Shorthand for --entity-type topics --entity-name TOPIC.
    #[arg(long, value_name = "TOPIC", conflicts_with_all = ["entity_type", "entity_name", "broker"])]
    topic: Option<String>,
    /// Shorthand for --entity-type brokers --entity-name ID.
    #[arg(long, value_name = "ID", conflicts_with_all = ["entity_type", "entity_name"])]
    broker: Option<String>,
    /// Shorthand for --entity-type groups --entity-name GROUP.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["entity_type", "entity_name", "topic", "broker"])]
    group: Option<String>,
    /// With --describe: every config, not only the overridden ones.
    #[arg(long)]
    all: bool,
    /// Configs to set: k=v,k=[a,b],... (repeatable).
    #[arg(long = "add-config", value_name = "K=V,...")]
    add_config: Vec<String>,
    /// Config names to remove: k,k,... (repeatable).
    #[arg(long = "delete-config", value_name = "K,...")]
    delete_config: Vec<String>,
}

/// Splits `a=1,b=[x,y]` at commas outside brackets; a bracketed value keeps its commas.
fn parse_add_config(s: &str) -> Result<Vec<(String, String)>> {
    split_top_level(s)
        .into_iter()
        .map(|i| {
            let (k, v) = common::parse_kv(&i, "--add-config")?;
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .map(str::to_string)
                .unwrap_or(v);
            Ok((k, v))
        })
        .collect()
}

/// The comma-separated items of `s`, where commas inside brackets do not separate.
fn split_top_level(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| i.trim().to_string())
        .collect()
}

pub fn run(args: ConfigsArgs) -> Result<ExitCode> {
    if args.entity_type.as_deref() == Some("users") {
        let user = args.entity_name.as_deref();
        if args.describe {
            return super::scram::describe(&args.conn, user);
        }
        let Some(user) = user else {
            return usage("--entity-name is required to alter a user's credentials");
        };
        if args.add_config.is_empty() && args.delete_config.is_empty() {
            return usage("--alter needs --add-config or --delete-config");
        }
        let add: Vec<String> = args
            .add_config
            .iter()
            .flat_map(|a| split_top_level(a))
            .collect();
        return super::scram::alter(&args.conn, user, &add, &args.delete_config);
    }
    let (resource, name) = match (&args.topic, &args.broker, &args.group, &args.entity_type) {
        (Some(t), _, _, _) => (Resource::Topic, t.clone()),
        (_, Some(b), _, _) => (Resource::Broker, b.clone()),
        (_, _, Some(g), _) => (Resource::Group, g.clone()),
        (_, _, _, Some(kind)) => {
            let r = match kind.as_str() {
                "topics" => Resource::Topic,
                "groups" => Resource::Group,
                _ => Resource::Broker,
            };
            let Some(name) = args.entity_name.clone() else {
                return usage("--entity-name is required with --entity-type");
            };
            (r, name)
        }
        _ => return usage(
            "say what to act on: --entity-type topics|brokers|groups --entity-name NAME, or --topic NAME",
        ),
    };
    if resource == Resource::Broker && name.parse::<i32>().is_err() {
        return usage(format!("a broker is named by its id, got '{name}'"));
    }
    if args.alter && args.add_config.is_empty() && args.delete_config.is_empty() {
        return usage("--alter needs --add-config or --delete-config");
    }
    let client: AdminClient<DefaultClientContext> =
        args.conn.client_config()?.create().map_err(create_error)?;
    let admin = Admin::new(client, args.conn.timeout());
    check_reachable(admin.client().inner(), &args.conn)?;
    if args.describe {
        describe(&admin, &args, resource, &name)
    } else {
        alter(&admin, &args, resource, &name)
    }
}

fn describe(admin: &Admin, args: &ConfigsArgs, resource: Resource, name: &str) -> Result<ExitCode> {
    let configs = admin
        .describe_configs(resource, name)?
        .map_err(|e| anyhow!("cannot describe configs: {e}"))?;
    let what = described_as(resource, name);
    let mut entries: Vec<_> = configs
        .iter()
        .filter(|e| args.all || !e.is_default && e.source != "STATIC_BROKER_CONFIG")
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if args.all {
        outln!("All configs for {what} are:")?;
    } else {
        outln!("Dynamic configs for {what} are:")?;
    }
    for e in entries {
        let value = if e.is_sensitive {
            "null".to_string()
        } else {
            e.value.clone().unwrap_or_else(|| "null".into())
        };
        outln!(
            "  {}={} sensitive={} synonyms={{{}:{}={}}}",
            e.name,
            value,
            e.is_sensitive,
            e.source,
            e.name,
            value
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn alter(admin: &Admin, args: &ConfigsArgs, resource: Resource, name: &str) -> Result<ExitCode> {
    let mut ops = Vec::new();
    for a in &args.add_config {
        for (k, v) in parse_add_config(a)? {
            ops.push((ConfigOp::Set, k, Some(v)));
        }
    }
    for d in &args.delete_config {
        for k in d.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            ops.push((ConfigOp::Delete, k.to_string(), None));
        }
    }
    admin.alter_configs(resource, name, &ops)??;
    let what = described_as(resource, name);
    outln!("Completed updating config for {what}.")?;
    Ok(ExitCode::SUCCESS)
}

/// How kafka-configs.sh names a resource in its output.
fn described_as(resource: Resource, name: &str) -> String {
    match resource {
        Resource::Topic => format!("topic {name}"),
        Resource::Broker => format!("broker {name}"),
        Resource::Group => format!("group {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_keeps_bracketed_lists() {
        let got = parse_add_config("retention.ms=1000, cleanup.policy=[compact,delete]")
            .expect("valid list");
        assert_eq!(
            got,
            vec![
                ("retention.ms".to_string(), "1000".to_string()),
                ("cleanup.policy".to_string(), "compact,delete".to_string())
            ]
        );
        assert!(parse_add_config("novalue").is_err());
    }
}
