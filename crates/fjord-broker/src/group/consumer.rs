//! One consumer group under the new consumer protocol (KIP-848): members that heartbeat
//! with a member epoch, the group epoch, the server-side assignors (`uniform`, `range`)
//! that compute the target assignment, and the per-member reconciliation that moves each
//! member toward its target without a partition ever being owned by two members.
//!
//! Like the classic state machine, everything here is synchronous and takes the time and
//! the topic metadata as arguments, so it can be tested without a clock or a broker. The
//! state lives in memory only: after a restart members are told UNKNOWN_MEMBER_ID and
//! rejoin with epoch 0 (committed offsets are kept by the coordinator as for any group).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fjord_controller::MetadataImage;
use regex::Regex;

use crate::error::code;

/// What a group needs to know about the cluster's topics.
pub trait Topics {
    /// A topic's partition count; 0 when the topic does not exist.
    fn partitions(&self, topic: &str) -> i32;
    /// Changes whenever the set of topics may have changed.
    fn version(&self) -> u64;
    /// Every topic name, internal ones included (Kafka matches subscription regexes
    /// against all of them; a member that names an internal topic gets it).
    fn names(&self) -> Vec<&str>;
}

impl Topics for MetadataImage {
    fn partitions(&self, topic: &str) -> i32 {
        self.topic(topic).map_or(0, |t| t.partitions.len() as i32)
    }

    fn version(&self) -> u64 {
        self.offset
    }

    fn names(&self) -> Vec<&str> {
        self.topics.keys().map(String::as_str).collect()
    }
}

/// The topics as one member may see them: with an authorizer, a regex subscription
/// matches only topics the member's principal may describe, as Kafka resolves it, so a
/// pattern cannot reach topics the member could not list.
pub struct Describable<'a> {
    pub topics: &'a dyn Topics,
    pub may_describe: &'a dyn Fn(&str) -> bool,
}

impl Topics for Describable<'_> {
    fn partitions(&self, topic: &str) -> i32 {
        self.topics.partitions(topic)
    }

    fn version(&self) -> u64 {
        self.topics.version()
    }

    fn names(&self) -> Vec<&str> {
        self.topics
            .names()
            .into_iter()
            .filter(|n| (self.may_describe)(n))
            .collect()
    }
}

/// Compiles a member's SubscribedTopicRegex. Kafka matches it against the whole topic
/// name (Java's `Matcher.matches`), so it is anchored at both ends. The `regex` crate's
/// syntax is RE2's, as is RE2J's, which Kafka's clients document for this field.
pub fn compile_topic_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|e| {
        // The crate's message spans several lines with a caret diagram; its last
        // line holds the description, which is what Kafka reports.
        let text = e.to_string();
        let description = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid syntax")
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        format!(
            "SubscribedTopicRegex `{pattern}` is not a valid regular expression: {description}."
        )
    })
}

/// A topic-partition by topic name (the handlers translate to and from topic ids).
pub type Tp = (String, i32);

/// Member epoch a member joins with, and the two it leaves with.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

pub const UNIFORM: &str = "uniform";
pub const RANGE: &str = "range";
/// Assignor names this broker implements; the first is the default.
pub const ASSIGNORS: &[&str] = &[UNIFORM, RANGE];

/// Where a member stands relative to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Owns exactly its target at the group's assignment epoch.
    Stable,
    /// Must give up partitions first; its epoch waits until it confirms.
    UnrevokedPartitions,
    /// At the assignment epoch, but waits for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// Topics the member names.
    pub subscribed: BTreeSet<String>,
    /// SubscribedTopicRegex: topics whose whole name matches are subscribed too.
    pub regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// Partitions the member may consume now.
    pub assigned: BTreeSet<Tp>,
    /// Partitions the member was told to give up and has not yet confirmed releasing:
    /// still its own, so nobody else gets them meanwhile.
    pub revoking: BTreeSet<Tp>,
    /// The member is removed if it does not heartbeat by then.
    deadline: i64,
    /// The member is fenced if it has not released `revoking` by then.
    revoke_deadline: Option<i64>,
}

impl ConsumerMember {
    fn owns(&self, tp: &Tp) -> bool {
        self.assigned.contains(tp) || self.revoking.contains(tp)
    }

    /// A static member that left with epoch -2 and may come back under a new member id.
    pub fn left_temporarily(&self) -> bool {
        self.epoch == STATIC_LEAVE_EPOCH
    }
}

/// One ConsumerGroupHeartbeat, as the coordinator needs it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatParams {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed: Option<Vec<String>>,
    /// `None`: unchanged since the last heartbeat; an empty string clears it.
    pub regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns now; `None`: unchanged since the last heartbeat.
    pub owned: Option<Vec<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatResult {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's full assignment, when the member must (re)learn it.
    pub assignment: Option<BTreeSet<Tp>>,
}

impl HeartbeatResult {
    pub fn error(error: i16, message: impl Into<String>, member_id: &str, epoch: i32) -> Self {
        HeartbeatResult {
            error,
            message: Some(message.into()),
            member_id: member_id.to_string(),
            member_epoch: epoch,
            assignment: None,
        }
    }
}

/// Broker settings every consumer group follows.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerTimeouts {
    pub session_ms: i64,
    pub heartbeat_ms: i32,
    /// group.consumer.max.size: members beyond this are refused.
    pub max_size: usize,
}

pub struct ConsumerGroup {
    pub id: String,
    /// Bumped whenever membership, subscriptions or subscribed topics' partitions change.
    pub epoch: i32,
    /// The group epoch the current target assignment was computed for.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// member id → the partitions the assignor wants it to own.
    pub target: HashMap<String, BTreeSet<Tp>>,
    /// The assignor the current target came from.
    pub assignor: String,
    /// Partition counts of subscribed topics when the target was computed: a change
    /// (topic created, partitions added) bumps the group epoch.
    topics: BTreeMap<String, i32>,
    /// group.instance.id → member id.
    statics: HashMap<String, String>,
    /// Every member's regex, compiled, with the topics it matched when last resolved.
    resolved: BTreeMap<String, (Option<Regex>, BTreeSet<String>)>,
    /// The topics' version the regexes were last resolved against.
    resolved_version: Option<u64>,
}

/// The group states Kafka reports for consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: HashMap::new(),
            assignor: UNIFORM.to_string(),
            topics: BTreeMap::new(),
            statics: HashMap::new(),
            resolved: BTreeMap::new(),
            resolved_version: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.assignment_epoch < self.epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Every topic some member subscribes to, by name or through its regex.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m))
            .collect()
    }

    /// A member's whole subscription: the topics it names and those its regex matched.
    pub fn member_topics(&self, m: &ConsumerMember) -> BTreeSet<String> {
        let mut out = m.subscribed.clone();
        if let Some((_, matched)) = m.regex.as_ref().and_then(|r| self.resolved.get(r)) {
            out.extend(matched.iter().cloned());
        }
        out
    }

    /// Resolves the members' regexes against the current topics: a regex new to the
    /// group at once, the others again whenever the topics changed since. Returns
    /// whether any regex now matches a different set (the group epoch must bump).
    fn resolve_regexes(&mut self, topics: &dyn Topics) -> bool {
        let wanted: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_ref())
            .collect();
        self.resolved.retain(|r, _| wanted.contains(r));
        let version = topics.version();
        let stale = self.resolved_version != Some(version);
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|r| !self.resolved.contains_key(*r))
            .cloned()
            .collect();
        if !stale && missing.is_empty() {
            return false;
        }
        let names = topics.names();
        let mut changed = false;
        for r in missing {
            // Members' regexes were checked when received; one that does not compile
            // here matches nothing rather than failing the group.
            let re = compile_topic_regex(&r)
                .inspect_err(
                    |e| tracing::warn!(group = %self.id, error = %e, "ignoring subscription regex"),
                )
                .ok();
            let matched = matching(re.as_ref(), &names);
            self.resolved.insert(r, (re, matched));
            changed = true;
        }
        if stale {
            for (re, matched) in self.resolved.values_mut() {
                let now = matching(re.as_ref(), &names);
                if now != *matched {
                    *matched = now;
                    changed = true;
                }
            }
        }
        self.resolved_version = Some(version);
        changed
    }

    /// Handles one heartbeat. `partitions` gives a topic's partition count (0 when the
    /// topic does not exist).
    pub fn heartbeat(
        &mut self,
        p: HeartbeatParams,
        topics: &dyn Topics,
        t: &ConsumerTimeouts,
        now: i64,
    ) -> HeartbeatResult {
        if let Some(a) = &p.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return HeartbeatResult::error(
                    code::UNSUPPORTED_ASSIGNOR,
                    format!(
                        "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                    ),
                    &p.member_id,
                    p.member_epoch,
                );
            }
        }
        match p.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(&p, topics),
            JOIN_EPOCH => {}
            e if e > 0 => {}
            e => {
                return HeartbeatResult::error(
                    code::INVALID_REQUEST,
                    format!("MemberEpoch {e} is invalid."),
                    &p.member_id,
                    e,
                )
            }
        }
        let full_request =
            p.rebalance_timeout_ms != -1 && p.subscribed.is_some() && p.owned.is_some();
        let before: Option<BTreeSet<Tp>>;
        let mut changed = false;
        if p.member_epoch == JOIN_EPOCH {
            match self.join(&p, t, now) {
                Ok((prev, c)) => {
                    before = prev;
                    changed = c;
                }
                Err(e) => return e,
            }
        } else {
            let Some(m) = self.members.get_mut(&p.member_id) else {
                return unknown_member(&self.id, &p);
            };
            if let Some(e) = fence_check(m, &p) {
                return e;
            }
            before = Some(m.assigned.clone());
            m.deadline = now + t.session_ms;
            if p.rebalance_timeout_ms > 0 {
                m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            }
            if let Some(subs) = &p.subscribed {
                let subs: BTreeSet<String> = subs.iter().cloned().collect();
                if subs != m.subscribed {
                    m.subscribed = subs;
                    changed = true;
                }
            }
            if let Some(r) = &p.regex {
                let r = Some(r.clone()).filter(|r| !r.is_empty());
                if r != m.regex {
                    m.regex = r;
                    changed = true;
                }
            }
            if p.server_assignor.is_some() && p.server_assignor != m.server_assignor {
                m.server_assignor = p.server_assignor.clone();
                changed = true;
            }
            if p.rack_id.is_some() {
                m.rack_id = p.rack_id.clone();
            }
        }
        // Topics created or deleted since the last heartbeat change what regexes match.
        if self.resolve_regexes(topics) {
            changed = true;
        }
        if changed {
            self.epoch += 1;
        }
        self.refresh_target(topics);
        let owned: Option<BTreeSet<Tp>> = p.owned.map(|o| o.into_iter().collect());
        self.reconcile(&p.member_id, owned.as_ref(), now);
        let Some(m) = self.members.get(&p.member_id) else {
            return HeartbeatResult::error(
                code::UNKNOWN_MEMBER_ID,
                "The member left the group.",
                &p.member_id,
                p.member_epoch,
            );
        };
        let send =
            p.member_epoch == JOIN_EPOCH || full_request || before.as_ref() != Some(&m.assigned);
        HeartbeatResult {
            error: code::NONE,
            message: None,
            member_id: m.id.clone(),
            member_epoch: m.epoch,
            assignment: send.then(|| m.assigned.clone()),
        }
    }

    /// A join (epoch 0): a new member, a member rejoining after being fenced, or a static
    /// member taking its instance id back. Returns the member's previous assignment (if
    /// it is an existing member) and whether the group epoch must bump.
    #[allow(clippy::type_complexity)]
    fn join(
        &mut self,
        p: &HeartbeatParams,
        t: &ConsumerTimeouts,
        now: i64,
    ) -> Result<(Option<BTreeSet<Tp>>, bool), HeartbeatResult> {
        let known = self.members.contains_key(&p.member_id)
            || p.instance_id
                .as_ref()
                .is_some_and(|i| self.statics.contains_key(i));
        if !known && self.members.len() >= t.max_size {
            return Err(HeartbeatResult::error(
                code::GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    t.max_size
                ),
                &p.member_id,
                p.member_epoch,
            ));
        }
        let subscribed: BTreeSet<String> = p.subscribed.iter().flatten().cloned().collect();
        let regex = p.regex.clone().filter(|r| !r.is_empty());
        let mut changed = false;
        let mut inherited: Option<ConsumerMember> = None;
        if let Some(inst) = &p.instance_id {
            if let Some(holder) = self.statics.get(inst).cloned() {
                if holder != p.member_id {
                    let active = self
                        .members
                        .get(&holder)
                        .is_some_and(|m| !m.left_temporarily());
                    if active {
                        return Err(HeartbeatResult::error(
                            code::UNRELEASED_INSTANCE_ID,
                            format!(
                                "Static member {holder} with instance id {inst} is not released yet."
                            ),
                            &p.member_id,
                            p.member_epoch,
                        ));
                    }
                    // The static member comes back under a new member id: it takes over
                    // the old member's assignment without a rebalance.
                    inherited = self.members.remove(&holder);
                    if let Some(target) = self.target.remove(&holder) {
                        self.target.insert(p.member_id.clone(), target);
                    }
                }
            }
        }
        let existing = self.members.remove(&p.member_id);
        let previous = existing.as_ref().map(|m| m.assigned.clone());
        let mut m = match (existing, inherited) {
            (Some(m), _) => {
                // A known member rejoining has dropped whatever it owned.
                ConsumerMember {
                    epoch: 0,
                    state: MemberState::Stable,
                    assigned: BTreeSet::new(),
                    revoking: BTreeSet::new(),
                    revoke_deadline: None,
                    ..m
                }
            }
            (None, Some(old)) => ConsumerMember {
                id: p.member_id.clone(),
                ..old
            },
            (None, None) => {
                changed = true;
                ConsumerMember {
                    id: p.member_id.clone(),
                    instance_id: p.instance_id.clone(),
                    rack_id: p.rack_id.clone(),
                    client_id: p.client_id.clone(),
                    client_host: p.client_host.clone(),
                    epoch: 0,
                    previous_epoch: -1,
                    state: MemberState::Stable,
                    subscribed: BTreeSet::new(),
                    regex: None,
                    server_assignor: None,
                    rebalance_timeout_ms: p.rebalance_timeout_ms,
                    assigned: BTreeSet::new(),
                    revoking: BTreeSet::new(),
                    deadline: 0,
                    revoke_deadline: None,
                }
            }
        };
        if m.subscribed != subscribed {
            m.subscribed = subscribed;
            changed = true;
        }
        if m.regex != regex {
            m.regex = regex;
            changed = true;
        }
        if m.server_assignor != p.server_assignor {
            m.server_assignor = p.server_assignor.clone();
            changed = true;
        }
        m.instance_id = p.instance_id.clone();
        m.rack_id = p.rack_id.clone();
        m.client_id = p.client_id.clone();
        m.client_host = p.client_host.clone();
        m.rebalance_timeout_ms = p.rebalance_timeout_ms;
        m.deadline = now + t.session_ms;
        if m.left_temporarily() {
            // Back from a static leave: it still owns what it owned.
            m.epoch = m.previous_epoch.max(0);
        }
        if let Some(inst) = &p.instance_id {
            self.statics.insert(inst.clone(), p.member_id.clone());
        }
        self.members.insert(p.member_id.clone(), m);
        Ok((previous, changed))
    }

    fn leave(&mut self, p: &HeartbeatParams, topics: &dyn Topics) -> HeartbeatResult {
        let Some(m) = self.members.get_mut(&p.member_id) else {
            return unknown_member(&self.id, p);
        };
        if p.member_epoch == STATIC_LEAVE_EPOCH && m.instance_id.is_some() {
            // A static member that leaves temporarily keeps its partitions (nobody else
            // gets them) until it returns or its session expires.
            m.previous_epoch = m.epoch;
            m.epoch = STATIC_LEAVE_EPOCH;
        } else {
            self.remove_member(&p.member_id.clone(), topics);
        }
        HeartbeatResult {
            error: code::NONE,
            message: None,
            member_id: p.member_id.clone(),
            member_epoch: p.member_epoch,
            assignment: None,
        }
    }

    /// Removes a member (left, expired, fenced): its partitions are free at once.
    pub fn remove_member(&mut self, id: &str, topics: &dyn Topics) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(inst) = &m.instance_id {
            if self.statics.get(inst).is_some_and(|h| h == id) {
                self.statics.remove(inst);
            }
        }
        self.target.remove(id);
        self.epoch += 1;
        self.refresh_target(topics);
    }

    /// Whether offsets may be committed (or fetched) by this member at this epoch.
    pub fn validate_offset_request(&self, member_id: &str, epoch: i32) -> Result<(), i16> {
        // A committer outside the group (admin tools, manual assignment), with or without
        // a member id: only while nobody consumes.
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(code::UNKNOWN_MEMBER_ID);
        };
        if epoch != m.epoch {
            return Err(code::STALE_MEMBER_EPOCH);
        }
        Ok(())
    }

    /// Bumps the group epoch if a subscribed topic's partition count changed, and
    /// recomputes the target assignment when it is behind the group epoch.
    fn refresh_target(&mut self, topics: &dyn Topics) {
        let topics: BTreeMap<String, i32> = self
            .subscribed_topics()
            .into_iter()
            .map(|t| {
                let n = topics.partitions(&t);
                (t, n)
            })
            .collect();
        if topics != self.topics {
            self.topics = topics;
            self.epoch += 1;
        }
        if self.assignment_epoch >= self.epoch {
            return;
        }
        self.assignor = self.preferred_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), self.member_topics(m)))
            .collect();
        self.target = match self.assignor.as_str() {
            RANGE => assign_range(&subscriptions, &self.topics),
            _ => assign_uniform(&subscriptions, &self.topics, &self.target),
        };
        self.assignment_epoch = self.epoch;
    }

    /// The assignor most members ask for; `uniform` when none asks.
    fn preferred_assignor(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *counts.entry(a.as_str()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(a, _)| a.to_string())
            .unwrap_or_else(|| UNIFORM.to_string())
    }

    /// Moves one member toward its target: revocation first (its epoch waits until it
    /// confirms), then partitions nobody else owns any more, at the assignment epoch.
    fn reconcile(&mut self, id: &str, owned: Option<&BTreeSet<Tp>>, now: i64) {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        // Partitions owned by the other members, including ones they are revoking.
        let taken: BTreeSet<Tp> = self
            .members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        if m.state == MemberState::UnrevokedPartitions {
            let released = owned.is_some_and(|o| o.intersection(&m.revoking).next().is_none());
            if !released {
                return;
            }
            m.revoking.clear();
            m.revoke_deadline = None;
        }
        if m.epoch == assignment_epoch && m.state == MemberState::Stable && m.assigned == target {
            return;
        }
        let revoke: BTreeSet<Tp> = m.assigned.difference(&target).cloned().collect();
        if !revoke.is_empty() {
            m.assigned = m.assigned.intersection(&target).cloned().collect();
            m.revoking = revoke;
            m.state = MemberState::UnrevokedPartitions;
            m.revoke_deadline = Some(now + m.rebalance_timeout_ms.max(0) as i64);
            return;
        }
        for tp in &target {
            if !taken.contains(tp) {
                m.assigned.insert(tp.clone());
            }
        }
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        m.state = if m.assigned == target {
            MemberState::Stable
        } else {
            MemberState::UnreleasedPartitions
        };
    }

    /// Removes members whose session expired and fences members that did not revoke in
    /// time. Returns when the next deadline is due.
    pub fn tick(&mut self, topics: &dyn Topics, now: i64) -> Option<i64> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now || m.revoke_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired");
            self.remove_member(&id, topics);
        }
        // Regexes are resolved on heartbeats only, as the heartbeating member may see the
        // topics (a topic created or deleted meanwhile is found by the next one, which is
        // also when members would learn of it).
        self.members
            .values()
            .flat_map(|m| [Some(m.deadline), m.revoke_deadline])
            .flatten()
            .min()
    }
}

/// The topic names a (compiled) regex matches; none for a regex that did not compile.
fn matching(re: Option<&Regex>, names: &[&str]) -> BTreeSet<String> {
    let Some(re) = re else {
        return BTreeSet::new();
    };
    names
        .iter()
        .filter(|n| re.is_match(n))
        .map(|n| n.to_string())
        .collect()
}

/// Epoch checks for a member already in the group. A member one epoch behind that owns
/// only what it was given is tolerated: it simply missed the last response.
fn fence_check(m: &ConsumerMember, p: &HeartbeatParams) -> Option<HeartbeatResult> {
    if let (Some(inst), Some(have)) = (&p.instance_id, &m.instance_id) {
        if inst != have {
            return Some(HeartbeatResult::error(
                code::FENCED_INSTANCE_ID,
                format!("Member {} does not own instance id {inst}.", m.id),
                &p.member_id,
                p.member_epoch,
            ));
        }
    }
    let fenced = || {
        Some(HeartbeatResult::error(
            code::FENCED_MEMBER_EPOCH,
            format!(
                "The consumer group member has a member epoch ({}) different from the one known by the group coordinator ({}).",
                p.member_epoch, m.epoch
            ),
            &p.member_id,
            p.member_epoch,
        ))
    };
    if p.member_epoch > m.epoch {
        return fenced();
    }
    if p.member_epoch < m.epoch {
        let owned_ok = p
            .owned
            .as_ref()
            .is_some_and(|o| o.iter().all(|tp| m.owns(tp)));
        if p.member_epoch != m.previous_epoch || !owned_ok {
            return fenced();
        }
    }
    None
}

/// Valid (topic, partition count) pairs, topics that do not exist left out.
fn existing(topics: &BTreeMap<String, i32>) -> impl Iterator<Item = (&String, i32)> {
    topics.iter().filter(|(_, n)| **n > 0).map(|(t, n)| (t, *n))
}

/// Server-side `range`: per topic, its subscribers in member-id order get contiguous
/// ranges, the first ones one partition more when the count does not divide evenly.
pub fn assign_range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
) -> HashMap<String, BTreeSet<Tp>> {
    let mut out: HashMap<String, BTreeSet<Tp>> = subscriptions
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    for (topic, count) in existing(topics) {
        let subscribers: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, id) in subscribers.iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            let set = out.entry((*id).clone()).or_default();
            for p in next..next + take {
                set.insert((topic.clone(), p));
            }
            next += take;
        }
    }
    out
}

/// Server-side `uniform`: balanced and sticky. Partitions stay where the previous target
/// put them while that keeps members within one partition of each other; the rest go to
/// the least loaded subscriber, and moves from the most to the least loaded even it out.
pub fn assign_uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
    previous: &HashMap<String, BTreeSet<Tp>>,
) -> HashMap<String, BTreeSet<Tp>> {
    let all: Vec<Tp> = existing(topics)
        .flat_map(|(t, n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    let subscribed =
        |id: &str, topic: &str| subscriptions.get(id).is_some_and(|s| s.contains(topic));
    let mut out: BTreeMap<String, BTreeSet<Tp>> = subscriptions
        .keys()
        .map(|id| (id.clone(), BTreeSet::new()))
        .collect();
    let mut placed: BTreeSet<Tp> = BTreeSet::new();
    // Keep what is still valid, at most the fair share when everyone subscribes alike,
    // so a joining member gets partitions from the others without a second pass.
    let fair = if subscriptions.is_empty() {
        0
    } else {
        all.len().div_ceil(subscriptions.len())
    };
    let mut previous_sorted: Vec<(&String, &BTreeSet<Tp>)> = previous.iter().collect();
    previous_sorted.sort();
    for (id, tps) in previous_sorted {
        let Some(set) = out.get_mut(id) else {
            continue;
        };
        for tp in tps {
            if set.len() >= fair {
                break;
            }
            let valid = topics.get(&tp.0).is_some_and(|n| tp.1 < *n) && subscribed(id, &tp.0);
            if valid && placed.insert(tp.clone()) {
                set.insert(tp.clone());
            }
        }
    }
    for tp in &all {
        if placed.contains(tp) {
            continue;
        }
        let least = out
            .iter()
            .filter(|(id, _)| subscribed(id, &tp.0))
            .min_by_key(|(id, s)| (s.len(), (*id).clone()))
            .map(|(id, _)| id.clone());
        if let Some(id) = least {
            placed.insert(tp.clone());
            if let Some(set) = out.get_mut(&id) {
                set.insert(tp.clone());
            }
        }
    }
    // Even out: move a partition from a member to one of its topic's subscribers that
    // has at least two fewer. Each move lowers the sum of squared loads, so this ends.
    let max_moves = all.len() * subscriptions.len().max(1);
    for _ in 0..max_moves {
        let mut moved = false;
        let mut donors: Vec<(usize, String)> =
            out.iter().map(|(id, s)| (s.len(), id.clone())).collect();
        donors.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        'donors: for (load, donor) in donors {
            let Some(candidates) = out.get(&donor).cloned() else {
                continue;
            };
            for tp in candidates.iter().rev() {
                let receiver = out
                    .iter()
                    .filter(|(id, s)| **id != donor && s.len() + 2 <= load && subscribed(id, &tp.0))
                    .min_by_key(|(id, s)| (s.len(), (*id).clone()))
                    .map(|(id, _)| id.clone());
                if let Some(r) = receiver {
                    if let Some(s) = out.get_mut(&donor) {
                        s.remove(tp);
                    }
                    if let Some(s) = out.get_mut(&r) {
                        s.insert(tp.clone());
                    }
                    moved = true;
                    break 'donors;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out.into_iter().collect()
}

/// The answer to a heartbeat or leave from a member id the group does not know.
fn unknown_member(group: &str, p: &HeartbeatParams) -> HeartbeatResult {
    HeartbeatResult::error(
        code::UNKNOWN_MEMBER_ID,
        format!("Member {} is not a member of group {group}.", p.member_id),
        &p.member_id,
        p.member_epoch,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ConsumerTimeouts = ConsumerTimeouts {
        session_ms: 45_000,
        heartbeat_ms: 5_000,
        max_size: usize::MAX,
    };

    /// A fixed set of topics with their partition counts, and a version.
    struct Fixed(u64, &'static [(&'static str, i32)]);

    impl Topics for Fixed {
        fn partitions(&self, topic: &str) -> i32 {
            self.1
                .iter()
                .find(|(t, _)| *t == topic)
                .map_or(0, |(_, n)| *n)
        }

        fn version(&self) -> u64 {
            self.0
        }

        fn names(&self) -> Vec<&str> {
            self.1.iter().map(|(t, _)| *t).collect()
        }
    }

    const THREE: Fixed = Fixed(0, &[("t", 3), ("u", 4)]);

    fn join(g: &mut ConsumerGroup, id: &str, topics: &[&str], now: i64) -> HeartbeatResult {
        g.heartbeat(
            HeartbeatParams {
                member_id: id.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed: Some(topics.iter().map(|t| t.to_string()).collect()),
                owned: Some(vec![]),
                ..Default::default()
            },
            &THREE,
            &T,
            now,
        )
    }

    /// A client's view of a member: what it owns and the epoch it last learned.
    #[derive(Default, Clone)]
    struct Client {
        epoch: i32,
        owned: BTreeSet<Tp>,
    }

    fn beat(g: &mut ConsumerGroup, id: &str, c: &mut Client, now: i64) -> HeartbeatResult {
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: id.into(),
                member_epoch: c.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(c.owned.iter().cloned().collect()),
                ..Default::default()
            },
            &THREE,
            &T,
            now,
        );
        assert_eq!(r.error, 0, "{id}: {:?}", r.message);
        c.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            // The client revokes at once and only then takes on new partitions, as real
            // clients do; it adopts exactly what the coordinator sends.
            c.owned = a.clone();
        }
        r
    }

    fn beat_with(g: &mut ConsumerGroup, id: &str, c: &mut Client, topics: &Fixed, now: i64) {
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: id.into(),
                member_epoch: c.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(c.owned.iter().cloned().collect()),
                ..Default::default()
            },
            topics,
            &T,
            now,
        );
        assert_eq!(r.error, 0, "{id}: {:?}", r.message);
        c.epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            c.owned = a;
        }
    }

    fn assert_exclusive(g: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for tp in m.assigned.iter().chain(m.revoking.iter()) {
                assert!(seen.insert(tp.clone()), "{tp:?} owned twice");
            }
        }
    }

    fn assert_clients_exclusive(clients: &BTreeMap<String, Client>) {
        let mut seen = BTreeSet::new();
        for c in clients.values() {
            for tp in &c.owned {
                assert!(seen.insert(tp.clone()), "{tp:?} consumed by two clients");
            }
        }
    }

    #[test]
    fn range_splits_each_topic_contiguously() {
        let subs: BTreeMap<String, BTreeSet<String>> = ["a", "b"]
            .iter()
            .map(|m| (m.to_string(), ["t".to_string()].into()))
            .collect();
        let topics: BTreeMap<String, i32> = [("t".to_string(), 3)].into();
        let out = assign_range(&subs, &topics);
        assert_eq!(
            out["a"],
            [("t".to_string(), 0), ("t".to_string(), 1)].into()
        );
        assert_eq!(out["b"], [("t".to_string(), 2)].into());
    }

    #[test]
    fn uniform_is_balanced_complete_and_sticky() {
        let topics: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 5)].into();
        let mut subs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in ["a", "b", "c"] {
            subs.insert(m.into(), ["t".to_string(), "u".to_string()].into());
        }
        let first = assign_uniform(&subs, &topics, &HashMap::new());
        let loads: Vec<usize> = first.values().map(|s| s.len()).collect();
        assert_eq!(loads.iter().sum::<usize>(), 12);
        assert!(loads.iter().all(|l| *l == 4), "{loads:?}");
        // A fourth member takes partitions only from the others; nothing else moves.
        subs.insert("d".into(), ["t".to_string(), "u".to_string()].into());
        let second = assign_uniform(&subs, &topics, &first);
        let loads: Vec<usize> = second.values().map(|s| s.len()).collect();
        assert!(loads.iter().all(|l| *l == 3), "{loads:?}");
        for m in ["a", "b", "c"] {
            assert!(second[m].is_subset(&first[m]), "{m} lost stickiness");
        }
        // Heterogeneous: a member subscribed to `u` only never gets `t`.
        subs.insert("e".into(), ["u".to_string()].into());
        let third = assign_uniform(&subs, &topics, &second);
        assert!(third["e"].iter().all(|tp| tp.0 == "u"));
        let total: usize = third.values().map(|s| s.len()).sum();
        assert_eq!(total, 12);
    }

    #[test]
    fn partitions_are_never_owned_twice_across_epochs_and_converge() {
        let mut g = ConsumerGroup::new("g");
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut now = 0;
        for id in ["a", "b", "c", "d"] {
            let r = join(&mut g, id, &["t", "u"], now);
            assert_eq!(r.error, 0);
            clients.insert(
                id.into(),
                Client {
                    epoch: r.member_epoch,
                    owned: r.assignment.unwrap_or_default(),
                },
            );
            // Heartbeat everyone in rounds; after every single heartbeat the group's
            // ownership and the clients' views must be exclusive.
            for _ in 0..6 {
                now += 10;
                let ids: Vec<String> = clients.keys().cloned().collect();
                for m in ids {
                    let mut c = clients[&m].clone();
                    beat(&mut g, &m, &mut c, now);
                    clients.insert(m, c);
                    assert_exclusive(&g);
                    assert_clients_exclusive(&clients);
                }
            }
            // Converged: every member at the assignment epoch, stable, and owning its target.
            assert_eq!(g.state(), ConsumerGroupState::Stable, "after {id} joined");
            let owned: usize = clients.values().map(|c| c.owned.len()).sum();
            assert_eq!(owned, 7);
            for (m, c) in &clients {
                assert_eq!(c.epoch, g.assignment_epoch);
                assert_eq!(c.owned, g.target[m]);
            }
        }
        // One leaves: its partitions move to the others without overlap.
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "b".into(),
                member_epoch: LEAVE_EPOCH,
                ..Default::default()
            },
            &THREE,
            &T,
            now,
        );
        assert_eq!(r.member_epoch, LEAVE_EPOCH);
        clients.remove("b");
        for _ in 0..4 {
            now += 10;
            let ids: Vec<String> = clients.keys().cloned().collect();
            for m in ids {
                let mut c = clients[&m].clone();
                beat(&mut g, &m, &mut c, now);
                clients.insert(m, c);
                assert_exclusive(&g);
                assert_clients_exclusive(&clients);
            }
        }
        assert_eq!(g.state(), ConsumerGroupState::Stable);
        assert_eq!(clients.values().map(|c| c.owned.len()).sum::<usize>(), 7);
    }

    #[test]
    fn a_member_keeps_revoked_partitions_until_it_confirms() {
        let mut g = ConsumerGroup::new("g");
        let r = join(&mut g, "a", &["t"], 0);
        let mut a = Client {
            epoch: r.member_epoch,
            owned: r.assignment.unwrap_or_default(),
        };
        assert_eq!(a.owned.len(), 3);
        let r = join(&mut g, "b", &["t"], 1);
        let mut b = Client {
            epoch: r.member_epoch,
            owned: r.assignment.unwrap_or_default(),
        };
        // b's target is non-empty but a still owns everything: b gets nothing yet.
        assert!(b.owned.is_empty());
        assert_eq!(g.members["b"].state, MemberState::UnreleasedPartitions);
        // a heartbeats while still owning all three (it has not revoked): a is told its
        // smaller assignment but keeps the old epoch until it confirms.
        let old_epoch = a.epoch;
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "a".into(),
                member_epoch: a.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(a.owned.iter().cloned().collect()),
                ..Default::default()
            },
            &THREE,
            &T,
            2,
        );
        assert_eq!(r.member_epoch, old_epoch);
        assert!(r.assignment.as_ref().is_some_and(|s| s.len() < 3));
        beat(&mut g, "b", &mut b, 3);
        assert!(b.owned.is_empty(), "b got partitions a has not released");
        // a confirms (its next heartbeat owns only the smaller set), then b gets the rest.
        a.owned = r.assignment.unwrap_or_default();
        beat(&mut g, "a", &mut a, 4);
        assert_eq!(a.epoch, g.assignment_epoch);
        beat(&mut g, "b", &mut b, 5);
        assert_eq!(a.owned.len() + b.owned.len(), 3);
        assert!(a.owned.is_disjoint(&b.owned));
        assert_eq!(g.state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn epochs_are_checked() {
        let mut g = ConsumerGroup::new("g");
        let r = join(&mut g, "a", &["t"], 0);
        let epoch = r.member_epoch;
        let hb = |member_epoch: i32, id: &str| HeartbeatParams {
            member_id: id.into(),
            member_epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let r = g.heartbeat(hb(epoch + 5, "a"), &THREE, &T, 1);
        assert_eq!(r.error, code::FENCED_MEMBER_EPOCH);
        let r = g.heartbeat(hb(epoch, "nobody"), &THREE, &T, 1);
        assert_eq!(r.error, code::UNKNOWN_MEMBER_ID);
        let r = g.heartbeat(hb(-3, "a"), &THREE, &T, 1);
        assert_eq!(r.error, code::INVALID_REQUEST);
        assert_eq!(g.validate_offset_request("a", epoch), Ok(()));
        assert_eq!(
            g.validate_offset_request("a", epoch - 1),
            Err(code::STALE_MEMBER_EPOCH)
        );
        assert_eq!(
            g.validate_offset_request("x", epoch),
            Err(code::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(
            g.validate_offset_request("", -1),
            Err(code::UNKNOWN_MEMBER_ID)
        );
    }

    #[test]
    fn static_members_hold_their_instance_and_partitions() {
        let mut g = ConsumerGroup::new("g");
        let mut p = HeartbeatParams {
            member_id: "a".into(),
            member_epoch: 0,
            instance_id: Some("i".into()),
            rebalance_timeout_ms: 1000,
            subscribed: Some(vec!["t".into()]),
            owned: Some(vec![]),
            ..Default::default()
        };
        let r = g.heartbeat(p.clone(), &THREE, &T, 0);
        assert_eq!(r.error, 0);
        let owned = r.assignment.unwrap_or_default();
        p.member_id = "a2".into();
        let r = g.heartbeat(p.clone(), &THREE, &T, 1);
        assert_eq!(r.error, code::UNRELEASED_INSTANCE_ID);
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "a".into(),
                member_epoch: STATIC_LEAVE_EPOCH,
                instance_id: Some("i".into()),
                ..Default::default()
            },
            &THREE,
            &T,
            2,
        );
        assert_eq!(r.member_epoch, STATIC_LEAVE_EPOCH);
        let epoch_before = g.epoch;
        let r = g.heartbeat(p, &THREE, &T, 3);
        assert_eq!(r.error, 0);
        assert_eq!(
            r.assignment,
            Some(owned),
            "the returning instance keeps its partitions"
        );
        assert_eq!(
            g.epoch, epoch_before,
            "no rebalance for a returning static member"
        );
    }

    #[test]
    fn silent_members_expire_and_slow_revokers_are_fenced() {
        let mut g = ConsumerGroup::new("g");
        join(&mut g, "a", &["t"], 0);
        join(&mut g, "b", &["t"], 40_000);
        // a never heartbeats again: its session (45 s) ends, then only b remains.
        g.tick(&THREE, 44_999);
        assert_eq!(g.members.len(), 2);
        g.tick(&THREE, 45_000);
        assert!(!g.members.contains_key("a"));
        assert_eq!(g.target["b"].len(), 3);

        // A member told to revoke that keeps heartbeating without releasing is fenced
        // once its rebalance timeout (30 s here) has passed, freeing the partitions.
        let mut g = ConsumerGroup::new("g");
        let r = join(&mut g, "a", &["t"], 0);
        let mut a = Client {
            epoch: r.member_epoch,
            owned: r.assignment.unwrap_or_default(),
        };
        join(&mut g, "b", &["t"], 1);
        let stubborn = |g: &mut ConsumerGroup, a: &Client, now: i64| {
            g.heartbeat(
                HeartbeatParams {
                    member_id: "a".into(),
                    member_epoch: a.epoch,
                    rebalance_timeout_ms: -1,
                    owned: Some(a.owned.iter().cloned().collect()),
                    ..Default::default()
                },
                &THREE,
                &T,
                now,
            )
        };
        assert_eq!(stubborn(&mut g, &a, 2).error, 0);
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        a.epoch = g.members["a"].epoch;
        assert_eq!(stubborn(&mut g, &a, 20_000).error, 0);
        g.tick(&THREE, 30_001);
        assert!(g.members.contains_key("a"));
        g.tick(&THREE, 30_002);
        assert!(!g.members.contains_key("a"));
        let mut b = Client {
            epoch: g.members["b"].epoch,
            ..Default::default()
        };
        beat(&mut g, "b", &mut b, 30_003);
        assert_eq!(b.owned.len(), 3);
    }

    #[test]
    fn group_consumer_max_size_refuses_new_members() {
        let t = ConsumerTimeouts { max_size: 1, ..T };
        let mut g = ConsumerGroup::new("g");
        let join_params = |id: &str| HeartbeatParams {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed: Some(vec!["t".to_string()]),
            owned: Some(vec![]),
            ..Default::default()
        };
        let first = g.heartbeat(join_params("a"), &THREE, &t, 0);
        assert_eq!(first.error, code::NONE);
        let second = g.heartbeat(join_params("b"), &THREE, &t, 0);
        assert_eq!(second.error, code::GROUP_MAX_SIZE_REACHED);
        assert_eq!(
            second.message.as_deref(),
            Some("The consumer group has reached its maximum capacity of 1 members.")
        );
        assert_eq!(g.members.len(), 1);
        // The existing member may rejoin.
        let again = g.heartbeat(join_params("a"), &THREE, &t, 0);
        assert_eq!(again.error, code::NONE);
    }

    #[test]
    fn regex_subscriptions_follow_the_topics() {
        let before = Fixed(1, &[("regex-a", 2), ("other", 1), ("xregex-c", 1)]);
        let mut g = ConsumerGroup::new("g");
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "a".into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                regex: Some("regex-.*".into()),
                owned: Some(vec![]),
                ..Default::default()
            },
            &before,
            &T,
            0,
        );
        assert_eq!(r.error, 0, "{:?}", r.message);
        // Matched against the whole name: `xregex-c` does not match.
        let tps = |topic: &str, n: i32| (0..n).map(|p| (topic.to_string(), p)).collect::<Vec<_>>();
        let want: BTreeSet<Tp> = tps("regex-a", 2).into_iter().collect();
        assert_eq!(r.assignment, Some(want));
        let epoch = g.epoch;
        let mut c = Client {
            epoch: r.member_epoch,
            owned: r.assignment.unwrap_or_default(),
        };
        // Nothing changed: the group epoch stays.
        beat_with(&mut g, "a", &mut c, &before, 1);
        assert_eq!(g.epoch, epoch);
        // A new matching topic: the group epoch bumps and the member gets it.
        let after = Fixed(2, &[("regex-a", 2), ("regex-b", 1), ("other", 1)]);
        beat_with(&mut g, "a", &mut c, &after, 2);
        assert!(g.epoch > epoch);
        let want: BTreeSet<Tp> = tps("regex-a", 2)
            .into_iter()
            .chain(tps("regex-b", 1))
            .collect();
        assert_eq!(c.owned, want);
        assert_eq!(
            g.subscribed_topics(),
            ["regex-a".to_string(), "regex-b".to_string()].into()
        );
        // The next heartbeat notices a deleted topic.
        let deleted = Fixed(3, &[("regex-b", 1), ("other", 1)]);
        let epoch = g.epoch;
        g.tick(&deleted, 3);
        assert_eq!(g.epoch, epoch, "the timer resolves no regex");
        beat_with(&mut g, "a", &mut c, &deleted, 3);
        assert!(g.epoch > epoch);
        assert_eq!(g.target["a"], tps("regex-b", 1).into_iter().collect());

        // A topic the member may not describe is not matched, as in Kafka.
        let more = Fixed(4, &[("regex-b", 1), ("regex-secret", 2), ("other", 1)]);
        let not_secret = |t: &str| t != "regex-secret";
        let visible = Describable {
            topics: &more,
            may_describe: &not_secret,
        };
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "a".into(),
                member_epoch: c.epoch,
                rebalance_timeout_ms: -1,
                owned: Some(c.owned.iter().cloned().collect()),
                ..Default::default()
            },
            &visible,
            &T,
            3,
        );
        assert_eq!(r.error, 0);
        assert_eq!(g.subscribed_topics(), ["regex-b".to_string()].into());
        // An empty regex clears it.
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "a".into(),
                member_epoch: c.epoch,
                rebalance_timeout_ms: -1,
                regex: Some(String::new()),
                owned: Some(c.owned.iter().cloned().collect()),
                ..Default::default()
            },
            &deleted,
            &T,
            4,
        );
        assert_eq!(r.error, 0);
        assert!(g.subscribed_topics().is_empty());
    }

    #[test]
    fn invalid_regexes_are_described_as_kafka_does() {
        let e = compile_topic_regex("regex-(").err().unwrap_or_default();
        assert!(
            e.starts_with("SubscribedTopicRegex `regex-(` is not a valid regular expression: "),
            "{e}"
        );
        assert!(e.ends_with('.'));
        assert!(compile_topic_regex("a.*").is_ok_and(|r| r.is_match("abc") && !r.is_match("xabc")));
    }
}
