//! `fjord features`: the cluster's feature levels, like `kafka-features.sh`.
//!
//!     fjord features --bootstrap-server HOST:9092 describe
//!     fjord features --bootstrap-server HOST:9092 upgrade --feature transaction.version=2
//!     fjord features --bootstrap-server HOST:9092 downgrade --feature transaction.version=1
//!     fjord features --bootstrap-server HOST:9092 disable --feature transaction.version
//!
//! Levels are read from ApiVersions and changed with UpdateFeatures, which this tool
//! sends itself (librdkafka has neither), to the first bootstrap broker that answers; the
//! broker hands the change to the active controller.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::common::{parse_kv, usage, Connection};
use super::wire::{call, open, refused, with_broker};
use crate::output::{errln, outln};

#[derive(Args)]
pub struct FeaturesArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: FeaturesCommand,
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Each feature: the levels the broker supports and the level the cluster finalized.
    Describe,
    /// Raise features to new levels.
    Upgrade(ChangeArgs),
    /// Lower features to older levels.
    Downgrade(DowngradeArgs),
    /// Turn features off (level 0).
    Disable(DisableArgs),
}

#[derive(Args)]
struct ChangeArgs {
    /// NAME=LEVEL; may be given several times.
    #[arg(long = "feature", value_name = "NAME=LEVEL", required = true)]
    features: Vec<String>,
    /// Check the change without making it.
    #[arg(long = "dry-run")]
    dry_run: bool,
}

#[derive(Args)]
struct DowngradeArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Allow a downgrade that may lose metadata (none of Fjord's features has one).
    #[arg(long = "unsafe")]
    unsafe_downgrade: bool,
}

#[derive(Args)]
struct DisableArgs {
    /// NAME; may be given several times.
    #[arg(long = "feature", value_name = "NAME", required = true)]
    features: Vec<String>,
    #[arg(long = "dry-run")]
    dry_run: bool,
}

/// Kafka's FeatureUpdate.UpgradeType.
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

pub fn run(args: FeaturesArgs) -> Result<ExitCode> {
    let (updates, dry_run, verb) = match args.command {
        FeaturesCommand::Describe => return describe(&args.conn),
        FeaturesCommand::Upgrade(c) => (levels(&c.features)?, c.dry_run, Verb::Upgrade),
        FeaturesCommand::Downgrade(d) => {
            let kind = if d.unsafe_downgrade {
                UNSAFE_DOWNGRADE
            } else {
                SAFE_DOWNGRADE
            };
            (
                levels(&d.change.features)?,
                d.change.dry_run,
                Verb::Downgrade(kind),
            )
        }
        FeaturesCommand::Disable(d) => (
            d.features
                .iter()
                .map(|f| (f.trim().to_string(), 0))
                .collect(),
            d.dry_run,
            Verb::Disable,
        ),
    };
    update(&args.conn, &updates, dry_run, verb)
}

#[derive(Clone, Copy)]
enum Verb {
    Upgrade,
    Downgrade(i8),
    Disable,
}

impl Verb {
    fn upgrade_type(self) -> i8 {
        match self {
            Verb::Upgrade => UPGRADE,
            Verb::Downgrade(kind) => kind,
            Verb::Disable => SAFE_DOWNGRADE,
        }
    }

    /// "upgrade X to 2", "downgrade X to 1", "disable X".
    fn phrase(self, name: &str, level: i16) -> String {
        match self {
            Verb::Upgrade => format!("upgrade {name} to {level}"),
            Verb::Downgrade(_) => format!("downgrade {name} to {level}"),
            Verb::Disable => format!("disable {name}"),
        }
    }

    /// "upgraded to 2", "downgraded to 1", "disabled".
    fn outcome(self, level: i16) -> String {
        match self {
            Verb::Upgrade => format!("upgraded to {level}"),
            Verb::Downgrade(_) => format!("downgraded to {level}"),
            Verb::Disable => "disabled".to_string(),
        }
    }
}

/// `NAME=LEVEL` pairs.
fn levels(features: &[String]) -> Result<Vec<(String, i16)>> {
    features
        .iter()
        .map(|f| {
            let (name, level) = parse_kv(f, "--feature")?;
            match level.parse::<i16>() {
                Ok(l) if l >= 0 => Ok((name, l)),
                _ => usage(format!(
                    "--feature {name}: '{level}' is not a feature level"
                )),
            }
        })
        .collect()
}

fn describe(conn: &Connection) -> Result<ExitCode> {
    let versions: ApiVersionsResponse = with_broker(&conn.bootstrap_server, |server| {
        let mut stream = open(conn, server)?;
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("fjord-tools"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = call(&mut stream, 1, request, 3)?;
        refused("ApiVersions failed", resp.error_code, &None)?;
        Ok(resp)
    })?;
    for s in &versions.supported_features {
        let finalized = versions
            .finalized_features
            .iter()
            .find(|f| f.name == s.name)
            .map_or(0, |f| f.max_version_level);
        outln!(
            "Feature: {}\tSupportedMinVersion: {}\tSupportedMaxVersion: {}\tFinalizedVersionLevel: {}\tEpoch: {}",
            s.name,
            s.min_version,
            s.max_version,
            finalized,
            versions.finalized_features_epoch
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn update(
    conn: &Connection,
    updates: &[(String, i16)],
    dry_run: bool,
    verb: Verb,
) -> Result<ExitCode> {
    let request = UpdateFeaturesRequest::default()
        .with_timeout_ms(i32::try_from(conn.command_timeout_ms).unwrap_or(i32::MAX))
        .with_validate_only(dry_run)
        .with_feature_updates(
            updates
                .iter()
                .map(|(name, level)| {
                    FeatureUpdateKey::default()
                        .with_feature(StrBytes::from_string(name.clone()))
                        .with_max_version_level(*level)
                        .with_upgrade_type(verb.upgrade_type())
                })
                .collect(),
        );
    let resp: UpdateFeaturesResponse = with_broker(&conn.bootstrap_server, |server| {
        let mut stream = open(conn, server)?;
        call(&mut stream, 1, request.clone(), 1)
    })?;
    let mut failed = false;
    for (name, level) in updates {
        let result = resp.results.iter().find(|r| r.feature.as_str() == name);
        let (code, message) = match result {
            Some(r) => (r.error_code, r.error_message.as_deref().unwrap_or("")),
            None => (resp.error_code, resp.error_message.as_deref().unwrap_or("")),
        };
        if code == 0 {
            let modal = if dry_run { "can be" } else { "was" };
            outln!("{name} {modal} {}.", verb.outcome(*level))?;
        } else {
            failed = true;
            errln!("Could not {}. {message}", verb.phrase(name, *level));
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
