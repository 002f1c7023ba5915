//! One consumer group under the classic protocol: membership, the rebalance state machine
//! (Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead), generations,
//! static members, and the group's committed offsets.
//!
//! Everything here is synchronous and takes the current time as an argument, so the
//! state machine can be tested without a clock. A JoinGroup or SyncGroup that must wait
//! for the rebalance gets a oneshot receiver; the group answers every waiter at the
//! moment the rebalance moves on.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;

use super::offsets::{GroupValue, MemberValue};
use crate::error::code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka's tools print and ListGroups filters on.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker-wide limits that shape every group.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub min_session_ms: i32,
    pub max_session_ms: i32,
    /// group.initial.rebalance.delay.ms: how long the first rebalance of an empty group
    /// waits for more members, so a fleet starting together settles in one generation.
    pub initial_delay_ms: i64,
    /// group.max.size: members beyond this are refused with GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
}

/// Most bytes of protocol metadata (every protocol of every member) one classic group
/// may hold. Kafka bounds none explicitly, but a group's state must fit one record of
/// `__consumer_offsets`; this keeps one group from holding unbounded broker memory while
/// leaving room for hundreds of members subscribed to hundreds of topics each.
pub const MAX_GROUP_METADATA_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets an id (MEMBER_ID_REQUIRED), then joins with it.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    pub fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: i16) -> SyncResult {
        SyncResult {
            error,
            ..Default::default()
        }
    }
}

/// An answer now, or once the rebalance gets there.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

fn now_reply<T>(t: T) -> Reply<T> {
    Reply::Now(t)
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// The member is removed if nothing is heard from it by then.
    deadline: i64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether the member's liveness is vouched for by a request parked in the group:
    /// a member waiting for the rebalance cannot also heartbeat.
    fn is_waiting(&self, state: GroupState) -> bool {
        match state {
            GroupState::PreparingRebalance => self.join_waiter.is_some(),
            GroupState::CompletingRebalance => self.sync_waiter.is_some(),
            _ => false,
        }
    }

    fn answer_join(&mut self, result: JoinResult) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(result);
        }
    }

    fn answer_sync(&mut self, result: SyncResult) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(result);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

pub struct ClassicGroup {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first member becomes leader when there is none.
    pub members: IndexMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they lapse if unused.
    pending: HashMap<String, i64>,
    /// group.instance.id → the member id currently holding it.
    statics: HashMap<String, String>,
    /// When the join phase ends whether or not every member has rejoined.
    join_deadline: i64,
    /// Set while the first rebalance of an empty group is held back: (start, cap).
    initial_delay: Option<(i64, i64)>,
    pub state_since: i64,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The membership changed in a way that must be written to `__consumer_offsets`.
    dirty: bool,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl ClassicGroup {
    pub fn new(id: &str, now: i64) -> ClassicGroup {
        ClassicGroup {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            join_deadline: 0,
            initial_delay: None,
            state_since: now,
            offsets: BTreeMap::new(),
            dirty: false,
        }
    }

    /// Rebuilds a group from its last metadata record. Members come back as they were;
    /// the ones that are still alive keep heartbeating, the rest expire as usual.
    pub fn restore(id: &str, value: &GroupValue, now: i64) -> ClassicGroup {
        let mut g = ClassicGroup::new(id, now);
        g.generation = value.generation;
        g.protocol_type = (!value.protocol_type.is_empty()).then(|| value.protocol_type.clone());
        g.protocol = value.protocol.clone();
        g.leader = value.leader.clone();
        if value.state_timestamp > 0 {
            g.state_since = value.state_timestamp;
        }
        for m in &value.members {
            let protocols = match &value.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => vec![],
            };
            if let Some(inst) = &m.instance_id {
                g.statics.insert(inst.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment.clone(),
                    join_waiter: None,
                    sync_waiter: None,
                    deadline: now + m.session_timeout_ms as i64,
                },
            );
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if g.leader
            .as_ref()
            .is_some_and(|l| !g.members.contains_key(l))
        {
            g.leader = g.members.keys().next().cloned();
        }
        g
    }

    /// The metadata record describing the group as it is now.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_since,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Member ids handed out that have not joined yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since = now;
    }

    /// Protocol names every current member supports.
    fn common_protocols(&self) -> Option<Vec<String>> {
        let mut members = self.members.values();
        let first = members.next()?;
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        Some(names)
    }

    /// Whether a joining member could take part: same protocol type, and at least one
    /// protocol in common with everyone already in (the joiner itself excluded).
    fn accepts(&self, joiner: &str, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        let others: Vec<&Member> = self.members.values().filter(|m| m.id != joiner).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    /// The first protocol everyone supports, in the leader's order of preference.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols()?;
        let leader = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        leader
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|n| common.contains(n))
            .cloned()
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|m| JoinMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            vec![]
        };
        JoinResult {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Checks a (member id, instance id) pair as presented by a request.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(inst) = instance_id {
            match self.statics.get(inst) {
                Some(holder) if holder != member_id => return Err(code::FENCED_INSTANCE_ID),
                Some(_) => {}
                None if self.members.contains_key(member_id) => {}
                None => return Err(code::UNKNOWN_MEMBER_ID),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        Ok(())
    }

    pub fn join(&mut self, p: JoinParams, t: &Timeouts, now: i64) -> Reply<JoinResult> {
        if self.state == GroupState::Dead {
            return now_reply(JoinResult::error(
                code::COORDINATOR_NOT_AVAILABLE,
                &p.member_id,
            ));
        }
        if let Some(refusal) = self.refuse_new_member(&p, t) {
            return now_reply(refusal);
        }
        if !self.accepts(&p.member_id, &p.protocol_type, &p.protocols) {
            return now_reply(JoinResult::error(
                code::INCONSISTENT_GROUP_PROTOCOL,
                &p.member_id,
            ));
        }
        if p.member_id.is_empty() {
            if let Some(inst) = p.instance_id.clone() {
                if let Some(old) = self.statics.get(&inst).cloned() {
                    return self.replace_static(&old, p, t, now);
                }
                let id = new_member_id(&inst);
                return self.add_and_join(id, p, t, now);
            }
            let prefix = if p.client_id.is_empty() {
                "member"
            } else {
                &p.client_id
            };
            let id = new_member_id(prefix);
            if p.require_known_member_id {
                self.pending
                    .insert(id.clone(), now + p.session_timeout_ms as i64);
                return now_reply(JoinResult::error(code::MEMBER_ID_REQUIRED, &id));
            }
            return self.add_and_join(id, p, t, now);
        }
        if self.pending.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_and_join(id, p, t, now);
        }
        if let Err(e) = self.check_member(&p.member_id, p.instance_id.as_deref()) {
            return now_reply(JoinResult::error(e, &p.member_id));
        }
        let id = p.member_id.clone();
        let Some(member) = self.members.get_mut(&id) else {
            return now_reply(JoinResult::error(code::UNKNOWN_MEMBER_ID, &id));
        };
        let changed = member.protocols != p.protocols;
        member.protocols = p.protocols;
        member.session_timeout_ms = p.session_timeout_ms;
        member.rebalance_timeout_ms = p.rebalance_timeout_ms;
        member.client_id = p.client_id;
        member.deadline = now + p.session_timeout_ms as i64;
        match self.state {
            GroupState::PreparingRebalance => {
                let rx = self.park_join(&id);
                self.maybe_complete_join(now);
                Reply::Wait(rx)
            }
            GroupState::CompletingRebalance if !changed => now_reply(self.join_result_for(&id)),
            GroupState::Stable if !changed && self.leader.as_deref() != Some(&id) => {
                now_reply(self.join_result_for(&id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let rx = self.park_join(&id);
                self.prepare_rebalance(t, now);
                Reply::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => {
                now_reply(JoinResult::error(code::UNKNOWN_MEMBER_ID, &id))
            }
        }
    }

    /// Bytes of protocol metadata the members hold.
    pub fn metadata_bytes(&self) -> usize {
        self.members
            .values()
            .flat_map(|m| m.protocols.iter())
            .map(|(name, meta)| name.len() + meta.len())
            .sum()
    }

    /// GROUP_MAX_SIZE_REACHED for a join that would add a member to a full group: one at
    /// `group.max.size` members, or one whose protocol metadata would pass
    /// [`MAX_GROUP_METADATA_BYTES`]. Known members, and a static member taking its own
    /// place back, are never refused: they do not grow the group.
    fn refuse_new_member(&self, p: &JoinParams, t: &Timeouts) -> Option<JoinResult> {
        let known = self.members.contains_key(&p.member_id)
            || p.instance_id
                .as_ref()
                .is_some_and(|i| self.statics.contains_key(i));
        let incoming: usize = p.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if !known && self.members.len() >= t.max_size {
            tracing::info!(group = %self.id, max = t.max_size, "join refused: group.max.size reached");
            return Some(JoinResult::error(code::GROUP_MAX_SIZE_REACHED, ""));
        }
        let held = self.metadata_bytes()
            - self.members.get(&p.member_id).map_or(0, |m| {
                m.protocols.iter().map(|(n, d)| n.len() + d.len()).sum()
            });
        if held + incoming > MAX_GROUP_METADATA_BYTES {
            tracing::warn!(
                group = %self.id,
                held,
                incoming,
                max = MAX_GROUP_METADATA_BYTES,
                "join refused: the group's member metadata would exceed its bound"
            );
            return Some(JoinResult::error(code::GROUP_MAX_SIZE_REACHED, ""));
        }
        None
    }

    /// Registers a waiting JoinGroup; a duplicate join from the same member replaces the
    /// older request, which is told to rejoin.
    fn park_join(&mut self, id: &str) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            m.answer_join(JoinResult::error(code::REBALANCE_IN_PROGRESS, id));
            m.join_waiter = Some(tx);
        }
        rx
    }

    fn add_and_join(
        &mut self,
        id: String,
        p: JoinParams,
        t: &Timeouts,
        now: i64,
    ) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        if let Some(inst) = &p.instance_id {
            self.statics.insert(inst.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocols: p.protocols,
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: None,
                deadline: now + p.session_timeout_ms as i64,
            },
        );
        let rx = self.park_join(&id);
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some((start, cap)) = self.initial_delay {
                    // Another member arrived during the initial delay: wait a little more
                    // for the rest, but never past the rebalance timeout.
                    self.join_deadline = (now + t.initial_delay_ms).min(start + cap);
                }
                self.maybe_complete_join(now);
            }
            _ => self.prepare_rebalance(t, now),
        }
        Reply::Wait(rx)
    }

    /// A static member restarted (same group.instance.id, no member id): it takes over
    /// the old member's place under a new id, and the old id is fenced.
    fn replace_static(
        &mut self,
        old_id: &str,
        p: JoinParams,
        t: &Timeouts,
        now: i64,
    ) -> Reply<JoinResult> {
        let Some(mut old) = self.members.shift_remove(old_id) else {
            let inst = p.instance_id.clone().unwrap_or_default();
            self.statics.remove(&inst);
            let id = new_member_id(&inst);
            return self.add_and_join(id, p, t, now);
        };
        old.answer_join(JoinResult::error(code::FENCED_INSTANCE_ID, old_id));
        old.answer_sync(SyncResult::error(code::FENCED_INSTANCE_ID));
        let inst = p.instance_id.clone().unwrap_or_default();
        let new_id = new_member_id(&inst);
        let was_leader = self.leader.as_deref() == Some(old_id);
        let same_protocols = old.protocols == p.protocols;
        self.statics.insert(inst, new_id.clone());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(
            new_id.clone(),
            Member {
                id: new_id.clone(),
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocols: p.protocols,
                assignment: old.assignment,
                join_waiter: None,
                sync_waiter: None,
                deadline: now + p.session_timeout_ms as i64,
            },
        );
        self.dirty = true;
        match self.state {
            // Same subscription, not the leader: it simply resumes its old assignment,
            // which is the point of static membership.
            GroupState::Stable if same_protocols && !was_leader => {
                now_reply(self.join_result_for(&new_id))
            }
            GroupState::CompletingRebalance => now_reply(self.join_result_for(&new_id)),
            GroupState::PreparingRebalance => {
                let rx = self.park_join(&new_id);
                self.maybe_complete_join(now);
                Reply::Wait(rx)
            }
            _ => {
                let rx = self.park_join(&new_id);
                self.prepare_rebalance(t, now);
                Reply::Wait(rx)
            }
        }
    }

    fn prepare_rebalance(&mut self, t: &Timeouts, now: i64) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.answer_sync(SyncResult::error(code::REBALANCE_IN_PROGRESS));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0);
        self.set_state(GroupState::PreparingRebalance, now);
        if was_empty && t.initial_delay_ms > 0 {
            self.initial_delay = Some((now, rebalance_timeout));
            self.join_deadline = now + t.initial_delay_ms.min(rebalance_timeout);
        } else {
            self.initial_delay = None;
            self.join_deadline = now + rebalance_timeout;
        }
        self.maybe_complete_join(now);
    }

    fn maybe_complete_join(&mut self, now: i64) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.pending.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are out, the generation moves
    /// on, and every waiting member gets its JoinGroup answer (the leader with the list
    /// of members to assign to).
    fn complete_join(&mut self, now: i64) {
        self.initial_delay = None;
        self.pending.clear();
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            self.dirty = true;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.protocol = self.select_protocol();
        self.set_state(GroupState::CompletingRebalance, now);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.deadline = now + m.session_timeout_ms as i64;
                m.answer_join(result);
            }
        }
    }

    fn remove_member(&mut self, id: &str) -> bool {
        let Some(mut m) = self.members.shift_remove(id) else {
            return false;
        };
        m.answer_join(JoinResult::error(code::UNKNOWN_MEMBER_ID, id));
        m.answer_sync(SyncResult::error(code::UNKNOWN_MEMBER_ID));
        if let Some(inst) = &m.instance_id {
            if self.statics.get(inst).map(String::as_str) == Some(id) {
                self.statics.remove(inst);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        true
    }

    /// After members left or expired: the rest must rebalance.
    fn after_removal(&mut self, t: &Timeouts, now: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(t, now),
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Reply<SyncResult> {
        if let Err(e) = self.check_member(member_id, instance_id) {
            return now_reply(SyncResult::error(e));
        }
        if generation != self.generation {
            return now_reply(SyncResult::error(code::ILLEGAL_GENERATION));
        }
        if protocol_type.is_some_and(|p| Some(p) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return now_reply(SyncResult::error(code::INCONSISTENT_GROUP_PROTOCOL));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                now_reply(SyncResult::error(code::UNKNOWN_MEMBER_ID))
            }
            GroupState::PreparingRebalance => {
                now_reply(SyncResult::error(code::REBALANCE_IN_PROGRESS))
            }
            GroupState::Stable => {
                let assignment = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.deadline = now + m.session_timeout_ms as i64;
                }
                now_reply(self.sync_ok(assignment))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.answer_sync(SyncResult::error(code::REBALANCE_IN_PROGRESS));
                    m.sync_waiter = Some(tx);
                    m.deadline = now + m.session_timeout_ms as i64;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = by_member.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now);
                    self.dirty = true;
                    let ok = self.sync_ok(Bytes::new());
                    for m in self.members.values_mut() {
                        let mut r = ok.clone();
                        r.assignment = m.assignment.clone();
                        m.deadline = now + m.session_timeout_ms as i64;
                        m.answer_sync(r);
                    }
                }
                Reply::Wait(rx)
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: code::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment,
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> i16 {
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return code::ILLEGAL_GENERATION;
        }
        let state = self.state;
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout_ms as i64;
        }
        match state {
            GroupState::Empty | GroupState::Dead => code::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => code::NONE,
        }
    }

    /// LeaveGroup for a batch of (member id, instance id); one error code per entry.
    pub fn leave(
        &mut self,
        members: &[(String, Option<String>)],
        t: &Timeouts,
        now: i64,
    ) -> Vec<i16> {
        let mut removed = false;
        let mut out = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let id = match (member_id.is_empty(), instance_id) {
                // A static member may leave by instance id alone (admin removal).
                (true, Some(inst)) => match self.statics.get(inst) {
                    Some(id) => id.clone(),
                    None => {
                        out.push(code::UNKNOWN_MEMBER_ID);
                        continue;
                    }
                },
                _ => {
                    if self.pending.remove(member_id).is_some() {
                        out.push(code::NONE);
                        continue;
                    }
                    if let Err(e) = self.check_member(member_id, instance_id.as_deref()) {
                        out.push(e);
                        continue;
                    }
                    member_id.clone()
                }
            };
            removed |= self.remove_member(&id);
            out.push(code::NONE);
        }
        if removed {
            self.after_removal(t, now);
        }
        out
    }

    /// Whether an OffsetCommit from this member at this generation may write.
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), i16> {
        // A committer outside the group (admin tools, manual assignment), with or without
        // a member id: allowed while no member owns the partitions.
        if generation < 0 && self.members.is_empty() {
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.deadline = now + m.session_timeout_ms as i64;
        }
        Ok(())
    }

    /// Advances timers: ends a join phase that ran out of time, lets unused member ids
    /// lapse, and removes members whose session expired. Returns the next time anything
    /// here is due.
    pub fn tick(&mut self, t: &Timeouts, now: i64) -> Option<i64> {
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        if self.pending.len() != before {
            self.maybe_complete_join(now);
        }
        if self.state == GroupState::PreparingRebalance && now >= self.join_deadline {
            self.complete_join(now);
        }
        let state = self.state;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline <= now && !m.is_waiting(state))
            .map(|m| m.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "session timed out; removing member");
                self.remove_member(id);
            }
            self.after_removal(t, now);
        }
        let state = self.state;
        let members = self
            .members
            .values()
            .filter(|m| !m.is_waiting(state))
            .map(|m| m.deadline);
        let join = (state == GroupState::PreparingRebalance).then_some(self.join_deadline);
        members
            .chain(self.pending.values().copied())
            .chain(join)
            .min()
    }

    /// offsets.retention.minutes: offsets of a group without members expire `retention`
    /// after the later of their commit and the group becoming empty. Returns the removed keys.
    pub fn expire_offsets(&mut self, retention_ms: i64, now: i64) -> Vec<(String, i32)> {
        if self.state != GroupState::Empty {
            return vec![];
        }
        let since = self.state_since;
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, o)| o.commit_timestamp.max(since) + retention_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.offsets.remove(k);
        }
        expired
    }

    /// Topics the members subscribe to, read from consumer-protocol metadata (its first
    /// fields, version then topic array, are the same in every version).
    pub fn subscribed_topics(&self) -> Vec<String> {
        let Some(protocol) = &self.protocol else {
            return vec![];
        };
        if self.protocol_type.as_deref() != Some("consumer") {
            return vec![];
        }
        let mut topics = Vec::new();
        for m in self.members.values() {
            let meta = m.metadata_for(protocol);
            let mut r: &[u8] = &meta;
            let parsed = (|| {
                let _version = read_i16(&mut r)?;
                let n = read_i32(&mut r)?;
                let mut out = Vec::new();
                for _ in 0..n.max(0) {
                    let len = read_i16(&mut r)?;
                    let len = usize::try_from(len).ok()?;
                    if r.len() < len {
                        return None;
                    }
                    out.push(String::from_utf8_lossy(&r[..len]).into_owned());
                    r = &r[len..];
                }
                Some(out)
            })();
            topics.extend(parsed.unwrap_or_default());
        }
        topics.sort();
        topics.dedup();
        topics
    }
}

fn read_i16(r: &mut &[u8]) -> Option<i16> {
    let (head, rest) = r.split_first_chunk::<2>()?;
    *r = rest;
    Some(i16::from_be_bytes(*head))
}

fn read_i32(r: &mut &[u8]) -> Option<i32> {
    let (head, rest) = r.split_first_chunk::<4>()?;
    *r = rest;
    Some(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        min_session_ms: 10,
        max_session_ms: 100_000,
        initial_delay_ms: 0,
        max_size: usize::MAX,
    };

    fn params(member_id: &str, protocols: &[&str]) -> JoinParams {
        JoinParams {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 5000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn now<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(t) => t,
            // The leader's own SyncGroup is answered as it is parked.
            Reply::Wait(mut rx) => rx.try_recv().expect("expected an immediate answer"),
        }
    }

    fn waiting<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Wait(rx) => rx,
            Reply::Now(_) => panic!("expected to wait"),
        }
    }

    /// Two-step join of a dynamic member; returns its id and the parked join.
    fn join_new(
        g: &mut ClassicGroup,
        protocols: &[&str],
        at: i64,
    ) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now(g.join(params("", protocols), &T, at));
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        let id = first.member_id;
        let rx = waiting(g.join(params(&id, protocols), &T, at));
        (id, rx)
    }

    fn done<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("answered")
    }

    #[test]
    fn group_max_size_refuses_new_members_but_not_known_ones() {
        let t = Timeouts { max_size: 2, ..T };
        let mut g = ClassicGroup::new("g", 0);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let first = now(g.join(params("", &["range"]), &t, 0));
            assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
            let _ = g.join(params(&first.member_id, &["range"]), &t, 0);
            ids.push(first.member_id);
        }
        assert_eq!(g.members.len(), 2);
        let third = now(g.join(params("", &["range"]), &t, 0));
        assert_eq!(third.error, code::GROUP_MAX_SIZE_REACHED);
        assert_eq!(third.member_id, "");
        assert_eq!(g.members.len(), 2);
        // A known member rejoining is not a new member.
        let again = g.join(params(&ids[0], &["range"]), &t, 0);
        if let Reply::Now(r) = again {
            assert_ne!(r.error, code::GROUP_MAX_SIZE_REACHED);
        }
    }

    #[test]
    fn member_metadata_of_a_group_is_bounded() {
        let mut g = ClassicGroup::new("g", 0);
        let mut big = params("", &["range"]);
        big.require_known_member_id = false;
        big.protocols = vec![(
            "range".into(),
            Bytes::from(vec![0u8; MAX_GROUP_METADATA_BYTES / 2]),
        )];
        let first = now_or_parked(g.join(big.clone(), &T, 0));
        assert_ne!(first, Some(code::GROUP_MAX_SIZE_REACHED));
        assert_eq!(g.members.len(), 1);
        let second = now_or_parked(g.join(big, &T, 0));
        assert_eq!(second, Some(code::GROUP_MAX_SIZE_REACHED));
        assert_eq!(g.members.len(), 1);
        assert!(g.metadata_bytes() <= MAX_GROUP_METADATA_BYTES);
    }

    /// The error of an immediate answer, or `None` for a parked join.
    fn now_or_parked(r: Reply<JoinResult>) -> Option<i16> {
        match r {
            Reply::Now(j) => Some(j.error),
            Reply::Wait(_) => None,
        }
    }

    #[test]
    fn single_member_join_sync_heartbeat_leave() {
        let mut g = ClassicGroup::new("g", 0);
        let (id, mut rx) = join_new(&mut g, &["range"], 0);
        let joined = done(&mut rx);
        assert_eq!(joined.error, code::NONE);
        assert_eq!(joined.generation, 1);
        assert_eq!(joined.leader, id);
        assert_eq!(joined.protocol.as_deref(), Some("range"));
        assert_eq!(joined.members.len(), 1);
        assert_eq!(g.state, GroupState::CompletingRebalance);

        let mut srx = waiting(g.sync(
            &id,
            None,
            1,
            None,
            None,
            vec![(id.clone(), Bytes::from_static(b"A"))],
            1,
        ));
        let synced = done(&mut srx);
        assert_eq!(synced.error, code::NONE);
        assert_eq!(&synced.assignment[..], b"A");
        assert_eq!(g.state, GroupState::Stable);
        assert!(g.take_dirty(), "a completed rebalance is persisted");

        assert_eq!(g.heartbeat(&id, None, 1, 2), code::NONE);
        assert_eq!(g.heartbeat(&id, None, 0, 2), code::ILLEGAL_GENERATION);
        assert_eq!(g.heartbeat("nobody", None, 1, 2), code::UNKNOWN_MEMBER_ID);

        assert_eq!(g.leave(&[(id.clone(), None)], &T, 3), vec![code::NONE]);
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, 2, "the last member leaving ends a generation");
        assert_eq!(g.heartbeat(&id, None, 2, 4), code::UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn second_member_triggers_rebalance_and_generation_bump() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        assert_eq!(g.state, GroupState::Stable);

        let (b, mut brx) = join_new(&mut g, &["range"], 10);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(
            brx.try_recv().is_err(),
            "waits for the existing member to rejoin"
        );
        assert_eq!(g.heartbeat(&a, None, 1, 11), code::REBALANCE_IN_PROGRESS);
        let mut arx = waiting(g.join(params(&a, &["range"]), &T, 12));
        let ja = done(&mut arx);
        let jb = done(&mut brx);
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.leader, a, "the leader stays the leader");
        assert_eq!(ja.members.len(), 2);
        assert!(
            jb.members.is_empty(),
            "only the leader sees the member list"
        );

        let mut bs = waiting(g.sync(&b, None, 2, None, None, vec![], 13));
        assert!(
            bs.try_recv().is_err(),
            "followers wait for the leader's assignment"
        );
        let mut as_ = waiting(g.sync(
            &a,
            None,
            2,
            Some("consumer"),
            Some("range"),
            vec![
                (a.clone(), Bytes::from_static(b"pa")),
                (b.clone(), Bytes::from_static(b"pb")),
            ],
            14,
        ));
        assert_eq!(&done(&mut as_).assignment[..], b"pa");
        assert_eq!(&done(&mut bs).assignment[..], b"pb");
        assert_eq!(g.state, GroupState::Stable);
    }

    #[test]
    fn rebalance_timeout_removes_members_that_do_not_rejoin() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        let (b, mut brx) = join_new(&mut g, &["range"], 100);
        // a keeps heartbeating but never rejoins.
        for t in (200..5000).step_by(200) {
            assert_eq!(g.heartbeat(&a, None, 1, t), code::REBALANCE_IN_PROGRESS);
            g.tick(&T, t);
        }
        assert!(brx.try_recv().is_err());
        g.tick(&T, 5100);
        let jb = done(&mut brx);
        assert_eq!(jb.error, code::NONE);
        assert_eq!(jb.leader, b);
        assert_eq!(jb.members.len(), 1);
        assert!(!g.members.contains_key(&a));
    }

    #[test]
    fn silent_member_expires_after_session_timeout() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        let (b, mut brx) = {
            // b joins while a is in CompletingRebalance: a's join answer is already out,
            // so the group rebalances again once a rejoins.
            join_new(&mut g, &["range"], 0)
        };
        let mut arx = waiting(g.join(params(&a, &["range"]), &T, 0));
        done(&mut arx);
        done(&mut brx);
        let gen = g.generation;
        now_or_wait_sync(&mut g, &a, gen, vec![]);
        now_or_wait_sync(&mut g, &b, gen, vec![]);
        assert_eq!(g.state, GroupState::Stable);

        // Only a heartbeats; b's 1000 ms session runs out.
        for t in (100..=1000).step_by(100) {
            assert_eq!(g.heartbeat(&a, None, gen, t), code::NONE);
            g.tick(&T, t);
        }
        assert!(!g.members.contains_key(&b), "silent member removed");
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let mut arx = waiting(g.join(params(&a, &["range"]), &T, 1100));
        let ja = done(&mut arx);
        assert_eq!(ja.generation, gen + 1);
        assert_eq!(ja.members.len(), 1);
    }

    fn now_or_wait_sync(g: &mut ClassicGroup, id: &str, gen: i32, asg: Vec<(String, Bytes)>) {
        match g.sync(id, None, gen, None, None, asg, 0) {
            Reply::Now(r) => assert_eq!(r.error, code::NONE),
            Reply::Wait(_) => {}
        }
    }

    #[test]
    fn unused_member_id_lapses_and_stops_blocking_the_join() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        // A new member gets an id but never comes back with it.
        let first = now(g.join(params("", &["range"]), &T, 10));
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        // Meanwhile the group rebalances for another reason: a changes its protocols.
        let mut arx = waiting(g.join(params(&a, &["range", "roundrobin"]), &T, 20));
        assert!(arx.try_recv().is_err(), "the pending id is waited for");
        g.tick(&T, 1011);
        assert_eq!(done(&mut arx).error, code::NONE);
    }

    #[test]
    fn protocol_is_the_leaders_first_common_choice() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["cooperative-sticky", "range"], 0);
        done(&mut arx);
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        let (_b, mut brx) = join_new(&mut g, &["range", "cooperative-sticky"], 1);
        let mut arx = waiting(g.join(params(&a, &["cooperative-sticky", "range"]), &T, 2));
        assert_eq!(
            done(&mut arx).protocol.as_deref(),
            Some("cooperative-sticky")
        );
        done(&mut brx);

        let refused = now(g.join(params("", &["roundrobin"]), &T, 3));
        assert_eq!(refused.error, code::INCONSISTENT_GROUP_PROTOCOL);
        let mut other = params("", &["range"]);
        other.protocol_type = "connect".into();
        assert_eq!(
            now(g.join(other, &T, 3)).error,
            code::INCONSISTENT_GROUP_PROTOCOL
        );
    }

    #[test]
    fn static_member_replacement_keeps_assignment_and_fences_old_id() {
        let mut g = ClassicGroup::new("g", 0);
        let mut p = params("", &["range"]);
        p.instance_id = Some("inst-1".into());
        let mut rx = waiting(g.join(p.clone(), &T, 0));
        let first = done(&mut rx);
        let old = first.member_id.clone();
        let mut q = params("", &["range"]);
        q.instance_id = Some("inst-2".into());
        let mut rx2 = waiting(g.join(q, &T, 0));
        let mut rx1 = waiting(g.join(
            JoinParams {
                member_id: old.clone(),
                ..p.clone()
            },
            &T,
            0,
        ));
        let j1 = done(&mut rx1);
        let j2 = done(&mut rx2);
        let gen = j1.generation;
        let leader = j1.leader.clone();
        let follower = if leader == old {
            j2.member_id.clone()
        } else {
            old.clone()
        };
        let follower_inst = if follower == old { "inst-1" } else { "inst-2" };
        now_or_wait_sync(
            &mut g,
            &leader,
            gen,
            vec![(follower.clone(), Bytes::from_static(b"mine"))],
        );
        assert_eq!(g.state, GroupState::Stable);

        // The follower restarts: same instance id, no member id.
        let mut again = params("", &["range"]);
        again.instance_id = Some(follower_inst.into());
        let rejoined = now(g.join(again, &T, 10));
        assert_eq!(rejoined.error, code::NONE);
        assert_eq!(
            rejoined.generation, gen,
            "no rebalance for a returning static member"
        );
        assert_ne!(rejoined.member_id, follower);
        assert_eq!(g.state, GroupState::Stable);
        let s = now(g.sync(
            &rejoined.member_id,
            Some(follower_inst),
            gen,
            None,
            None,
            vec![],
            11,
        ));
        assert_eq!(&s.assignment[..], b"mine");
        // The old incarnation is fenced everywhere.
        assert_eq!(
            g.heartbeat(&follower, Some(follower_inst), gen, 12),
            code::FENCED_INSTANCE_ID
        );
        assert_eq!(
            g.validate_commit(&follower, Some(follower_inst), gen, 12),
            Err(code::FENCED_INSTANCE_ID)
        );
    }

    #[test]
    fn initial_delay_holds_the_first_rebalance() {
        let t = Timeouts {
            initial_delay_ms: 300,
            ..T
        };
        let mut g = ClassicGroup::new("g", 0);
        let first = now(g.join(params("", &["range"]), &t, 0));
        let mut arx = waiting(g.join(params(&first.member_id, &["range"]), &t, 0));
        assert!(arx.try_recv().is_err());
        let second = now(g.join(params("", &["range"]), &t, 200));
        let mut brx = waiting(g.join(params(&second.member_id, &["range"]), &t, 200));
        g.tick(&t, 400);
        assert!(arx.try_recv().is_err(), "a new arrival extends the delay");
        g.tick(&t, 500);
        let ja = done(&mut arx);
        assert_eq!(ja.generation, 1);
        assert_eq!(ja.members.len(), 2, "both members in the first generation");
        done(&mut brx);
    }

    #[test]
    fn commit_rules() {
        let mut g = ClassicGroup::new("g", 0);
        assert_eq!(
            g.validate_commit("", None, -1, 0),
            Ok(()),
            "simple committer on empty group"
        );
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        assert_eq!(
            g.validate_commit(&a, None, 1, 0),
            Err(code::REBALANCE_IN_PROGRESS)
        );
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        assert_eq!(g.validate_commit(&a, None, 1, 0), Ok(()));
        assert_eq!(
            g.validate_commit(&a, None, 0, 0),
            Err(code::ILLEGAL_GENERATION)
        );
        assert_eq!(
            g.validate_commit("x", None, 1, 0),
            Err(code::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(
            g.validate_commit("", None, -1, 0),
            Err(code::UNKNOWN_MEMBER_ID)
        );
    }

    #[test]
    fn a_bad_request_does_not_disturb_the_group() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        now(g.sync(&a, None, 1, None, None, vec![], 0));
        assert_eq!(
            now(g.join(params("bogus", &["range"]), &T, 1)).error,
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            now(g.sync("bogus", None, 1, None, None, vec![], 1)).error,
            code::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            g.leave(&[("bogus".into(), None)], &T, 1),
            vec![code::UNKNOWN_MEMBER_ID]
        );
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.generation, 1);
        assert_eq!(g.heartbeat(&a, None, 1, 2), code::NONE);
    }

    #[test]
    fn offsets_expire_only_when_empty() {
        let mut g = ClassicGroup::new("g", 0);
        g.offsets.insert(
            ("t".into(), 0),
            CommittedOffset {
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 100,
            },
        );
        assert!(g.expire_offsets(1000, 1099).is_empty());
        assert_eq!(g.expire_offsets(1000, 1100), vec![("t".to_string(), 0)]);
        assert!(g.offsets.is_empty());
    }

    #[test]
    fn restore_round_trips_membership() {
        let mut g = ClassicGroup::new("g", 0);
        let (a, mut arx) = join_new(&mut g, &["range"], 0);
        done(&mut arx);
        now(g.sync(
            &a,
            None,
            1,
            None,
            None,
            vec![(a.clone(), Bytes::from_static(b"x"))],
            0,
        ));
        let r = ClassicGroup::restore("g", &g.to_value(), 50);
        assert_eq!(r.state, GroupState::Stable);
        assert_eq!(r.generation, 1);
        assert_eq!(r.leader.as_deref(), Some(a.as_str()));
        assert_eq!(&r.members[&a].assignment[..], b"x");
        let mut r = r;
        assert_eq!(r.heartbeat(&a, None, 1, 60), code::NONE);
    }
}
