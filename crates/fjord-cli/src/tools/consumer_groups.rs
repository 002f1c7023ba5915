//! `fjord consumer-groups`: list, describe (offsets and lag, members, state), reset offsets
//! and delete consumer groups, with the flags and tables of Kafka's
//! `kafka-consumer-groups.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::groups::GroupInfo;

use super::admin::{Admin, PartitionOffset};
use super::common::{self, check_reachable, create_error, usage, Connection};
use crate::output::{errln, outln};

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["list", "describe", "reset_offsets", "delete"])
))]
#[command(group(
    ArgGroup::new("reset_spec")
        .args(["to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime", "to_current"])
))]
#[command(group(ArgGroup::new("reset_mode").args(["dry_run", "execute"])))]
#[command(group(ArgGroup::new("describe_view").args(["members", "state", "offsets"])))]
pub struct GroupsArgs {
    #[command(flatten)]
    conn: Connection,
    /// List consumer groups.
    #[arg(long)]
    list: bool,
    /// Describe a group: offsets and lag (default), --members or --state.
    #[arg(long)]
    describe: bool,
    /// Reset a group's committed offsets (the group must have no active members).
    #[arg(long = "reset-offsets")]
    reset_offsets: bool,
    /// Delete a group and its committed offsets.
    #[arg(long)]
    delete: bool,
    /// The group to act on (repeatable for --describe and --delete).
    #[arg(long, value_name = "GROUP")]
    group: Vec<String>,
    /// Act on every group (--describe, --delete).
    #[arg(long = "all-groups")]
    all_groups: bool,
    /// With --describe: one line per member.
    #[arg(long)]
    members: bool,
    /// With --describe: the group's state and assignment strategy.
    #[arg(long)]
    state: bool,
    /// With --describe: offsets and lag per partition (the default view).
    #[arg(long)]
    offsets: bool,
    /// With --reset-offsets: TOPIC or TOPIC:P,P,... (repeatable).
    #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
    topic: Vec<String>,
    /// With --reset-offsets: every topic the group has offsets for.
    #[arg(long = "all-topics")]
    all_topics: bool,
    /// Reset to the earliest offset.
    #[arg(long = "to-earliest")]
    to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long = "to-latest")]
    to_latest: bool,
    /// Reset to offset N (kept within the log's bounds).
    #[arg(long = "to-offset", value_name = "N")]
    to_offset: Option<i64>,
    /// Move the committed offset by N (negative moves back).
    #[arg(long = "shift-by", value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Reset to the first record at or after YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm] (UTC when
    /// no zone is given).
    #[arg(long = "to-datetime", value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// Keep the committed offsets (shows them).
    #[arg(long = "to-current")]
    to_current: bool,
    /// Show the new offsets without committing them (the default).
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

pub fn run(args: GroupsArgs) -> Result<ExitCode> {
    if (args.describe || args.delete) && args.group.is_empty() && !args.all_groups {
        return usage("--group GROUP (or --all-groups) is required with --describe and --delete");
    }
    if args.reset_offsets {
        if args.group.len() != 1 {
            return usage("--reset-offsets needs exactly one --group");
        }
        if args.topic.is_empty() && !args.all_topics {
            return usage("--reset-offsets needs --topic TOPIC or --all-topics");
        }
        if !(args.to_earliest
            || args.to_latest
            || args.to_current
            || args.to_offset.is_some()
            || args.shift_by.is_some()
            || args.to_datetime.is_some())
        {
            return usage(
                "--reset-offsets needs one of --to-earliest, --to-latest, --to-current, \
                 --to-offset, --shift-by, --to-datetime",
            );
        }
    }
    let client: AdminClient<DefaultClientContext> =
        args.conn.client_config()?.create().map_err(create_error)?;
    let admin = Admin::new(client, args.conn.timeout());
    check_reachable(admin.client().inner(), &args.conn)?;
    if args.list {
        for g in group_names(&admin, &args)? {
            outln!("{g}")?;
        }
        Ok(ExitCode::SUCCESS)
    } else if args.describe {
        describe(&admin, &args)
    } else if args.reset_offsets {
        reset(&admin, &args)
    } else {
        delete(&admin, &args)
    }
}

fn group_names(admin: &Admin, args: &GroupsArgs) -> Result<Vec<String>> {
    let list = admin
        .client()
        .inner()
        .fetch_group_list(None, args.conn.timeout())
        .map_err(|e| anyhow!("cannot list groups: {}", common::describe_kafka_error(&e)))?;
    let names: BTreeSet<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
    Ok(names.into_iter().collect())
}

fn targets(admin: &Admin, args: &GroupsArgs) -> Result<Vec<String>> {
    if args.all_groups {
        group_names(admin, args)
    } else {
        Ok(args.group.clone())
    }
}

/// State and members of one group, as the coordinator describes it.
struct GroupView {
    state: String,
    protocol: String,
    members: Vec<Member>,
}

struct Member {
    id: String,
    host: String,
    client_id: String,
    partitions: Vec<(String, i32)>,
}

fn group_view(admin: &Admin, args: &GroupsArgs, group: &str) -> Result<Option<GroupView>> {
    let list = admin
        .client()
        .inner()
        .fetch_group_list(Some(group), args.conn.timeout())
        .map_err(|e| {
            anyhow!(
                "cannot describe group '{group}': {}",
                common::describe_kafka_error(&e)
            )
        })?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(view_of))
}

fn view_of(g: &GroupInfo) -> GroupView {
    GroupView {
        state: g.state().to_string(),
        protocol: g.protocol().to_string(),
        members: g
            .members()
            .iter()
            .map(|m| Member {
                id: m.id().to_string(),
                host: m.client_host().trim_start_matches('/').to_string(),
                client_id: m.client_id().to_string(),
                partitions: m.assignment().map(parse_assignment).unwrap_or_default(),
            })
            .collect(),
    }
}

/// Decodes the consumer protocol's assignment (version, [topic, [partition]], user data);
/// anything unreadable means "no partitions" rather than a failure of the whole describe.
fn parse_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn int16(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }
    fn int32(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn parse(mut b: &[u8]) -> Option<Vec<(String, i32)>> {
        let b = &mut b;
        let _version = int16(b)?;
        let topics = int32(b)?;
        let mut out = Vec::new();
        for _ in 0..topics.max(0) {
            let len = usize::try_from(int16(b)?).ok()?;
            let topic = String::from_utf8_lossy(take(b, len)?).into_owned();
            let parts = int32(b)?;
            for _ in 0..parts.max(0) {
                out.push((topic.clone(), int32(b)?));
            }
        }
        Some(out)
    }
    parse(bytes).unwrap_or_default()
}

fn is_inactive(state: &str) -> bool {
    matches!(state, "Empty" | "Dead" | "")
}

/// Prints rows as left-aligned columns separated by a space, the last column unpadded.
fn print_table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$} ", w = widths[i]));
            }
        }
        outln!("{}", s.trim_end())
    };
    outln!()?;
    line(header.to_vec())?;
    for r in rows {
        line(r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

fn log_end(admin: &Admin, args: &GroupsArgs, topic: &str, partition: i32) -> Result<(i64, i64)> {
    admin
        .client()
        .inner()
        .fetch_watermarks(topic, partition, args.conn.timeout())
        .map_err(|e| {
            anyhow!(
                "cannot read offsets of {topic}-{partition}: {}",
                common::describe_kafka_error(&e)
            )
        })
}

fn committed(admin: &Admin, group: &str) -> Result<Vec<PartitionOffset>> {
    admin.group_offsets(group)?.map_err(|e| anyhow!("{e}"))
}

fn describe(admin: &Admin, args: &GroupsArgs) -> Result<ExitCode> {
    let mut failed = false;
    for group in targets(admin, args)? {
        let view = group_view(admin, args, &group)?;
        let offsets = committed(admin, &group)?;
        let exists = view
            .as_ref()
            .is_some_and(|v| v.state != "Dead" && !v.state.is_empty())
            || !offsets.is_empty();
        let Some(view) = view.filter(|_| exists) else {
            errln!("Error: Consumer group '{group}' does not exist.");
            failed = true;
            continue;
        };
        if args.state {
            let header = ["GROUP", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"];
            let row = vec![
                group.clone(),
                view.protocol.clone(),
                view.state.clone(),
                view.members.len().to_string(),
            ];
            print_table(&header, &[row])?;
            continue;
        }
        if view.members.is_empty() {
            outln!("\nConsumer group '{group}' has no active members.")?;
        }
        if args.members {
            let header = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"];
            let rows: Vec<Vec<String>> = view
                .members
                .iter()
                .map(|m| {
                    vec![
                        group.clone(),
                        m.id.clone(),
                        m.host.clone(),
                        m.client_id.clone(),
                        m.partitions.len().to_string(),
                    ]
                })
                .collect();
            print_table(&header, &rows)?;
            continue;
        }
        // Every partition the group has an offset for or a member owns.
        type Row<'a> = (Option<i64>, Option<&'a Member>);
        let mut rows_by_tp: BTreeMap<(String, i32), Row<'_>> = BTreeMap::new();
        for o in &offsets {
            rows_by_tp.insert((o.topic.clone(), o.partition), (Some(o.offset), None));
        }
        for m in &view.members {
            for tp in &m.partitions {
                rows_by_tp.entry(tp.clone()).or_insert((None, None)).1 = Some(m);
            }
        }
        let mut rows = Vec::new();
        for ((topic, partition), (current, member)) in &rows_by_tp {
            let (_, end) = log_end(admin, args, topic, *partition)?;
            let dash = || "-".to_string();
            rows.push(vec![
                group.clone(),
                topic.clone(),
                partition.to_string(),
                current.map_or_else(dash, |c| c.to_string()),
                end.to_string(),
                current.map_or_else(dash, |c| (end - c).max(0).to_string()),
                member.map_or_else(dash, |m| m.id.clone()),
                member.map_or_else(dash, |m| m.host.clone()),
                member.map_or_else(dash, |m| m.client_id.clone()),
            ]);
        }
        let header = [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ];
        print_table(&header, &rows)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The partitions a reset applies to.
fn reset_partitions(
    admin: &Admin,
    args: &GroupsArgs,
    current: &[PartitionOffset],
) -> Result<Vec<(String, i32)>> {
    if args.all_topics {
        return Ok(current
            .iter()
            .map(|o| (o.topic.clone(), o.partition))
            .collect());
    }
    let md = check_reachable(admin.client().inner(), &args.conn)?;
    let mut out = Vec::new();
    for spec in &args.topic {
        let (topic, wanted) = match spec.split_once(':') {
            Some((t, ps)) => {
                let ps = ps
                    .split(',')
                    .map(|p| p.trim().parse::<i32>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        common::UsageError(format!(
                            "--topic expects TOPIC or TOPIC:0,1,…, got '{spec}'"
                        ))
                    })?;
                (t, Some(ps))
            }
            None => (spec.as_str(), None),
        };
        let Some(t) = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
        else {
            bail!("Topic '{topic}' does not exist");
        };
        let all: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        match wanted {
            None => out.extend(all.iter().map(|p| (topic.to_string(), *p))),
            Some(ps) => {
                for p in ps {
                    if !all.contains(&p) {
                        bail!("Topic '{topic}' has no partition {p}");
                    }
                    out.push((topic.to_string(), p));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn reset(admin: &Admin, args: &GroupsArgs) -> Result<ExitCode> {
    let group = &args.group[0];
    if let Some(view) = group_view(admin, args, group)? {
        if !is_inactive(&view.state) {
            bail!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
                view.state
            );
        }
    }
    let current = committed(admin, group)?;
    let targets = reset_partitions(admin, args, &current)?;
    let when = args
        .to_datetime
        .as_deref()
        .map(parse_datetime)
        .transpose()?;
    let mut plan = Vec::new();
    for (topic, partition) in targets {
        let (low, high) = log_end(admin, args, &topic, partition)?;
        let committed_at = current
            .iter()
            .find(|o| o.topic == topic && o.partition == partition)
            .map(|o| o.offset);
        let new = if args.to_earliest {
            low
        } else if args.to_latest {
            high
        } else if let Some(n) = args.to_offset {
            n.clamp(low, high)
        } else if let Some(n) = args.shift_by {
            committed_at
                .unwrap_or(high)
                .saturating_add(n)
                .clamp(low, high)
        } else if let Some(ms) = when {
            offset_for_time(args, &topic, partition, ms)?.unwrap_or(high)
        } else {
            committed_at.unwrap_or(high)
        };
        plan.push(PartitionOffset {
            topic,
            partition,
            offset: new,
        });
    }
    if args.execute {
        let results = admin
            .commit_group_offsets(group, &plan)?
            .map_err(|e| anyhow!("{e}"))?;
        if let Some((p, Some(e))) = results.iter().find(|(_, e)| e.is_some()) {
            bail!(
                "cannot commit offset {} for {}-{}: {e}",
                p.offset,
                p.topic,
                p.partition
            );
        }
    } else if !args.dry_run {
        errln!(
            "WARN: No action will be performed as the --execute option is missing. \
             Add --dry-run to say so explicitly."
        );
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|p| {
            vec![
                group.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                p.offset.to_string(),
            ]
        })
        .collect();
    print_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn offset_for_time(args: &GroupsArgs, topic: &str, partition: i32, ms: i64) -> Result<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = args.conn.client_config()?.create().map_err(create_error)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms))?;
    let found = consumer
        .offsets_for_times(tpl, args.conn.timeout())
        .map_err(|e| {
            anyhow!(
                "cannot look up offsets by time: {}",
                common::describe_kafka_error(&e)
            )
        })?;
    Ok(found
        .elements()
        .iter()
        .find(|e| e.topic() == topic && e.partition() == partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// Milliseconds since the epoch for `YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm]`, UTC by default.
fn parse_datetime(s: &str) -> Result<i64> {
    let bad = || {
        common::UsageError(format!(
            "--to-datetime expects YYYY-MM-DDTHH:mm:SS[.sss][Z|±hh:mm], got '{s}'"
        ))
    };
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    if d.len() != 3 {
        return Err(bad().into());
    }
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, m) = z[1..].split_once(':').unwrap_or((&z[1..], "0"));
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (c, sign * (h * 60 + m))
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    if t.len() != 3 || frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad().into());
    }
    let millis: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    let (y, mo, da) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || t[0] > 23 || t[1] > 59 || t[2] > 60 {
        return Err(bad().into());
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset_min * 60;
    Ok(secs * 1000 + millis)
}

fn delete(admin: &Admin, args: &GroupsArgs) -> Result<ExitCode> {
    let groups = targets(admin, args)?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().request_timeout(Some(args.conn.timeout()));
    let results = common::block_on(admin.client().delete_groups(&names, &opts))?
        .map_err(|e| anyhow!("cannot delete groups: {}", common::describe_kafka_error(&e)))?;
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|(g, code)| format!("Group '{g}' could not be deleted due to: {code}"))
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    let quoted: Vec<String> = groups.iter().map(|g| format!("'{g}'")).collect();
    outln!(
        "Deletion of requested consumer groups ({}) was successful.",
        quoted.join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_in_utc_and_with_zones() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").ok(), Some(0));
        assert_eq!(
            parse_datetime("2024-03-01T12:30:05.250Z").ok(),
            Some(1_709_296_205_250)
        );
        assert_eq!(
            parse_datetime("2024-03-01T14:30:05.250+02:00").ok(),
            Some(1_709_296_205_250)
        );
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn assignment_bytes_decode() {
        let mut b = vec![
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2,
        ];
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse_assignment(&b),
            vec![("t".to_string(), 0), ("t".to_string(), 2)]
        );
        assert!(parse_assignment(&[0, 0, 0]).is_empty());
    }
}
