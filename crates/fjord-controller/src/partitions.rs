//! The controller's decisions about partitions, as pure functions of the image: where
//! replicas go, who leads once a broker is fenced or comes back, and whether a leader's
//! request to change its ISR (AlterPartition) stands. Each returns the records to commit,
//! so the rules are tested, and simulated, without a quorum, clocks or sockets.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ControllerError;
use crate::image::{MetadataImage, PartitionImage, TopicImage};
use crate::record::{ConfigResource, MetadataRecord};

/// No leader: every in-sync replica is fenced and unclean election is off, so the
/// partition waits for one of them rather than lose what only they hold.
pub const NO_LEADER: i32 = -1;

/// Kafka error codes an AlterPartition is refused with.
pub mod alter_code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
}

/// Kafka's ElectionType: the preferred replica (the first of the assignment), or any
/// live replica when none in sync is left (unclean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    Preferred,
    Unclean,
}

/// Elects a leader for one partition as ElectLeaders asks. Preferred: the first replica
/// takes over if it is live and in sync (ELECTION_NOT_NEEDED when it already leads).
/// Unclean: only for a partition without a leader, any live replica, which becomes the
/// whole ISR; whatever only the lost replicas held is gone, which is what the operator
/// asked for.
pub fn elect(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    election: Election,
) -> Result<MetadataRecord, (i16, String)> {
    let (p, at) = find(topic, partition)?;
    let mut next = p.clone();
    match election {
        Election::Preferred => {
            let preferred = p.replicas[0];
            if p.leader == preferred {
                return Err((
                    alter_code::ELECTION_NOT_NEEDED,
                    format!("Leader election not needed for {at}"),
                ));
            }
            if !p.isr.contains(&preferred) || !is_live(image, preferred) {
                return Err((
                    alter_code::PREFERRED_LEADER_NOT_AVAILABLE,
                    format!("Failed to elect leader for {at}: preferred replica {preferred} is not live and in sync"),
                ));
            }
            next.leader = preferred;
        }
        Election::Unclean => {
            if p.leader != NO_LEADER {
                return Err((
                    alter_code::ELECTION_NOT_NEEDED,
                    format!("Leader election not needed for {at}"),
                ));
            }
            let Some(r) = p.replicas.iter().copied().find(|&r| is_live(image, r)) else {
                return Err((
                    alter_code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    format!("Failed to elect leader for {at}: no replica is live"),
                ));
            };
            next.leader = r;
            if !p.isr.contains(&r) {
                next.isr = vec![r];
            }
        }
    }
    next.leader_epoch = p.leader_epoch + 1;
    next.partition_epoch = p.partition_epoch + 1;
    Ok(partition_record(topic, &next))
}

/// Whether leadership is unbalanced enough to move back to preferred replicas
/// (`auto.leader.rebalance.enable`): some broker leads fewer than `percent` percent of
/// the partitions it is the preferred replica of, while it could.
pub fn leaders_imbalanced(image: &MetadataImage, percent: u32) -> bool {
    let mut preferred: std::collections::BTreeMap<i32, (u32, u32)> = Default::default();
    for p in image.topics.values().flat_map(|t| &t.partitions) {
        let Some(&first) = p.replicas.first() else {
            continue;
        };
        let e = preferred.entry(first).or_default();
        e.0 += 1;
        if p.leader != first && p.isr.contains(&first) && is_live(image, first) {
            e.1 += 1;
        }
    }
    preferred
        .values()
        .any(|&(total, movable)| movable > 0 && movable * 100 > total * percent)
}

/// A leader's request for a new ISR, with the epochs it believes current, so that a
/// leader that was replaced (or raced its own earlier request) cannot write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// Starts the reassignment of one partition to `target`, replaces an ongoing one, or
/// with `None` cancels it, as AlterPartitionReassignments asks (KIP-455). The new
/// replicas join the assignment as `adding_replicas` and catch up as followers; the ones
/// to go stay, as `removing_replicas`, until every target replica is in the ISR. Then the
/// assignment becomes the target (see [`complete_reassignment`]), in the same record if
/// that is already so. Nothing is ever dropped from the ISR of a partition except what
/// leaves its assignment. Returns no record when the partition is already so assigned.
pub fn reassign(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    target: Option<&[i32]>,
    allow_replication_factor_change: bool,
) -> Result<Option<MetadataRecord>, (i16, String)> {
    let (p, at) = find(topic, partition)?;
    let original = p.original_replicas();
    let mut next = p.clone();
    match target {
        None => {
            if !p.reassigning() {
                return Err((
                    alter_code::NO_REASSIGNMENT_IN_PROGRESS,
                    format!("No reassignment of {at} is in progress"),
                ));
            }
            next.replicas = original;
            next.adding_replicas.clear();
            next.removing_replicas.clear();
        }
        Some(target) => {
            let invalid = |why: String| Err((alter_code::INVALID_REPLICA_ASSIGNMENT, why));
            if target.is_empty() {
                return invalid(format!("The new replica list of {at} is empty"));
            }
            for (i, r) in target.iter().enumerate() {
                if target[..i].contains(r) {
                    return invalid(format!(
                        "Broker {r} appears more than once in the new replica list of {at}"
                    ));
                }
                if !image.brokers.contains_key(r) {
                    return invalid(format!(
                        "Broker {r} in the new replica list of {at} is not registered"
                    ));
                }
            }
            if !allow_replication_factor_change && target.len() != original.len() {
                return Err((
                    alter_code::INVALID_REPLICATION_FACTOR,
                    format!(
                        "The reassignment would change the replication factor of {at} from {} to {}",
                        original.len(),
                        target.len()
                    ),
                ));
            }
            if !p.reassigning() && target == p.replicas.as_slice() {
                return Ok(None);
            }
            let removing: Vec<i32> = original
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            next.adding_replicas = target
                .iter()
                .copied()
                .filter(|r| !original.contains(r))
                .collect();
            next.replicas = target.iter().chain(&removing).copied().collect();
            next.removing_replicas = removing;
        }
    }
    // Replicas that left the assignment (added by a reassignment now cancelled or
    // replaced) leave the ISR with it; it stays in replica order.
    next.isr = next
        .replicas
        .iter()
        .copied()
        .filter(|r| p.isr.contains(r))
        .collect();
    if next.isr.is_empty() {
        return Err((
            alter_code::INVALID_REPLICA_ASSIGNMENT,
            format!("The change would leave {at} without any in-sync replica"),
        ));
    }
    if p.leader != NO_LEADER && !next.replicas.contains(&p.leader) {
        next.leader = next
            .isr
            .iter()
            .copied()
            .find(|&r| is_live(image, r))
            .unwrap_or(NO_LEADER);
    }
    complete_reassignment(image, &mut next);
    bump_epochs(p, &mut next);
    Ok(Some(partition_record(topic, &next)))
}

/// The epochs of a partition change: the partition epoch always, the leader epoch when
/// the leader changes or a replica leaves the assignment. The latter fences the removed
/// replica: a fetch it sent before it learnt of its removal must not count, should it be
/// added back with an empty copy, as that new copy's progress into the ISR.
fn bump_epochs(p: &PartitionImage, next: &mut PartitionImage) {
    let removed = p.replicas.iter().any(|r| !next.replicas.contains(r));
    if next.leader != p.leader || removed {
        next.leader_epoch = p.leader_epoch + 1;
    }
    next.partition_epoch = p.partition_epoch + 1;
}

/// Completes an ongoing reassignment once every target replica is in the ISR: the
/// assignment becomes the target, the removed replicas leave it and its ISR, and if the
/// leader was among them a live target replica takes over (the caller bumps the leader
/// epoch). Until a target replica is live to lead, nothing changes.
pub fn complete_reassignment(image: &MetadataImage, next: &mut PartitionImage) {
    if !next.reassigning() {
        return;
    }
    let target = next.target_replicas();
    if !target.iter().all(|r| next.isr.contains(r)) {
        return;
    }
    let leader = if target.contains(&next.leader) {
        next.leader
    } else {
        match target.iter().copied().find(|&r| is_live(image, r)) {
            Some(r) => r,
            None => return,
        }
    };
    next.leader = leader;
    next.isr = target.clone();
    next.replicas = target;
    next.adding_replicas.clear();
    next.removing_replicas.clear();
}

/// Spreads `count` partitions (numbered from `first`) over the live brokers: each
/// partition's replicas on distinct brokers, leaders rotating over all of them. When
/// brokers declare `broker.rack`, consecutive brokers in the rotation alternate racks, so
/// a partition's replicas land on as many racks as there are.
pub fn place(
    image: &MetadataImage,
    first: i32,
    count: i32,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    // Fenced brokers are down or cut off: nothing new is placed on them.
    let brokers = rack_alternating(image);
    if replication_factor as usize > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Replication factor: {replication_factor} larger than available brokers: {}.",
            brokers.len()
        )));
    }
    let n = brokers.len();
    Ok((first..first + count)
        .map(|p| {
            (0..replication_factor as usize)
                .map(|r| brokers[(p as usize + r) % n])
                .collect()
        })
        .collect())
}

/// The live brokers, ordered so that neighbours are on different racks where possible:
/// the first broker of each rack, then the second of each, and so on. Without racks it is
/// simply the brokers by id.
fn rack_alternating(image: &MetadataImage) -> Vec<i32> {
    let live: Vec<_> = image.live_brokers().collect();
    if live.iter().all(|b| b.rack.is_none()) {
        return live.iter().map(|b| b.node_id).collect();
    }
    let mut racks: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for b in &live {
        racks
            .entry(b.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(b.node_id);
    }
    let deepest = racks.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| racks.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
}

/// Partition `partition` of `topic`, and its name for messages (`topic-partition`).
fn find(topic: &TopicImage, partition: i32) -> Result<(&PartitionImage, String), (i16, String)> {
    let at = format!("{}-{partition}", topic.name);
    match topic.partitions.iter().find(|p| p.partition == partition) {
        Some(p) => Ok((p, at)),
        None => Err((
            alter_code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Unknown partition {at}"),
        )),
    }
}

/// A new state for one partition, as a record.
fn partition_record(topic: &TopicImage, p: &PartitionImage) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id: topic.topic_id,
        partition: p.partition,
        replicas: p.replicas.clone(),
        isr: p.isr.clone(),
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    }
}

fn is_live(image: &MetadataImage, id: i32) -> bool {
    image.brokers.get(&id).is_some_and(|b| !b.fenced)
}

/// `unclean.leader.election.enable` for a topic: its own config, else the cluster-wide
/// dynamic default, else Kafka's default (false).
fn unclean_allowed(image: &MetadataImage, topic: &TopicImage) -> bool {
    const KEY: &str = "unclean.leader.election.enable";
    topic
        .configs
        .get(KEY)
        .or_else(|| {
            image
                .configs(ConfigResource::Broker, "")
                .and_then(|c| c.get(KEY))
        })
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// What fencing `node` (heartbeats lost, or a controlled shutdown) does to partitions: it
/// leaves every ISR, and every partition it led gets a new leader from the rest of the
/// ISR, in replica order, with the leader epoch bumped. When no in-sync replica is left
/// the partition goes offline (leader -1) with its last in-sync replica kept in the ISR,
/// so the data only that replica holds is waited for rather than lost; unless unclean
/// election is enabled, in which case any live replica takes over.
pub fn on_fenced(image: &MetadataImage, node: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if !p.replicas.contains(&node) {
                continue;
            }
            let mut next = p.clone();
            let remaining: Vec<i32> = p.isr.iter().copied().filter(|&r| r != node).collect();
            if p.leader == node || p.leader == NO_LEADER {
                let candidate = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| remaining.contains(r) && is_live(image, *r));
                match candidate {
                    Some(leader) => {
                        next.leader = leader;
                        next.isr = remaining;
                    }
                    None => {
                        let unclean = unclean_allowed(image, topic)
                            .then(|| {
                                p.replicas
                                    .iter()
                                    .copied()
                                    .find(|&r| r != node && is_live(image, r))
                            })
                            .flatten();
                        match unclean {
                            Some(leader) => {
                                next.leader = leader;
                                next.isr = vec![leader];
                            }
                            None => {
                                next.leader = NO_LEADER;
                                // Never empty: the last member is who has everything.
                                if remaining.is_empty() {
                                    next.isr = p.isr.clone();
                                } else {
                                    next.isr = remaining;
                                }
                            }
                        }
                    }
                }
                if next.leader != p.leader {
                    next.leader_epoch = p.leader_epoch + 1;
                }
            } else if p.isr.contains(&node) {
                next.isr = remaining;
            }
            if next != *p {
                next.partition_epoch = p.partition_epoch + 1;
                records.push(partition_record(topic, &next));
            }
        }
    }
    records
}

/// What `node` coming back (unfenced) does: a partition left without a leader whose
/// last in-sync replica is this broker is led by it again.
pub fn on_unfenced(image: &MetadataImage, node: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for p in &topic.partitions {
            if p.leader == NO_LEADER && p.isr.contains(&node) {
                let mut next = p.clone();
                next.leader = node;
                next.leader_epoch = p.leader_epoch + 1;
                next.partition_epoch = p.partition_epoch + 1;
                records.push(partition_record(topic, &next));
            }
        }
    }
    records
}

/// Checks a leader's AlterPartition against the image, as Kafka's controller does, and
/// returns the record of the new ISR (or none when it is already so) with the state it
/// leads to. Refusals carry the Kafka code the leader acts on: a fenced epoch means it is
/// no longer leader, a stale partition epoch that it should wait for newer metadata.
pub fn alter_partition(
    image: &MetadataImage,
    req: &AlterPartitionRequest,
) -> Result<(Vec<MetadataRecord>, PartitionImage), (i16, String)> {
    let topic = image.topic_by_id(&req.topic_id).ok_or((
        alter_code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("Unknown topic id {}", req.topic_id),
    ))?;
    let name = &topic.name;
    let p = topic
        .partitions
        .iter()
        .find(|p| p.partition == req.partition)
        .ok_or((
            alter_code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("Unknown partition {name}-{}", req.partition),
        ))?;
    let at = format!("{name}-{}", req.partition);
    if req.leader_epoch < p.leader_epoch {
        return Err((
            alter_code::FENCED_LEADER_EPOCH,
            format!(
                "Leader epoch {} of {at} is older than the current {}",
                req.leader_epoch, p.leader_epoch
            ),
        ));
    }
    if req.leader != p.leader || req.leader_epoch > p.leader_epoch {
        return Err((
            alter_code::NOT_LEADER_OR_FOLLOWER,
            format!(
                "Broker {} at leader epoch {} is not the leader of {at} (leader {} at epoch {})",
                req.leader, req.leader_epoch, p.leader, p.leader_epoch
            ),
        ));
    }
    if req.partition_epoch != p.partition_epoch {
        return Err((
            alter_code::INVALID_UPDATE_VERSION,
            format!(
                "Partition epoch {} of {at} is not the current {}",
                req.partition_epoch, p.partition_epoch
            ),
        ));
    }
    if !req.isr.contains(&req.leader) {
        return Err((
            alter_code::INVALID_REQUEST,
            format!("The new ISR {:?} of {at} leaves out its leader", req.isr),
        ));
    }
    let mut isr = req.isr.clone();
    isr.sort_unstable();
    isr.dedup();
    if isr.len() != req.isr.len() || isr.iter().any(|r| !p.replicas.contains(r)) {
        return Err((
            alter_code::INVALID_REQUEST,
            format!(
                "The new ISR {:?} of {at} is not a set of its replicas {:?}",
                req.isr, p.replicas
            ),
        ));
    }
    // A broker joins the ISR only while it is alive: a fenced one would be counted for
    // acks=all while nobody can reach it.
    if let Some(r) = req
        .isr
        .iter()
        .find(|r| !p.isr.contains(r) && !is_live(image, **r))
    {
        return Err((
            alter_code::INELIGIBLE_REPLICA,
            format!("Broker {r} is fenced and cannot join the ISR of {at}"),
        ));
    }
    // Kept in replica order, so that the ISR reads the same whichever way it was reached.
    let ordered: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| req.isr.contains(r))
        .collect();
    if ordered == p.isr {
        return Ok((vec![], p.clone()));
    }
    let mut next = p.clone();
    next.isr = ordered;
    // The follower that just joined may be the last a reassignment waited for.
    complete_reassignment(image, &mut next);
    bump_epochs(p, &mut next);
    Ok((vec![partition_record(topic, &next)], next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(
        brokers: &[(i32, Option<&str>)],
        partitions: &[(Vec<i32>, Vec<i32>, i32)],
    ) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, rack) in brokers {
            image.apply(&MetadataRecord::RegisterBroker {
                node_id: *id,
                host: "h".into(),
                port: 9092,
                rack: rack.map(str::to_string),
                incarnation: None,
                listeners: vec![],
            });
        }
        let topic_id = Uuid::from_u128(7);
        image.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id,
            configs: Default::default(),
        });
        for (i, (replicas, isr, leader)) in partitions.iter().enumerate() {
            image.apply(&MetadataRecord::Partition {
                topic_id,
                partition: i as i32,
                replicas: replicas.clone(),
                isr: isr.clone(),
                leader: *leader,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            });
        }
        image
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    fn fence(image: &mut MetadataImage, node: i32, fenced: bool) {
        let mut records = vec![MetadataRecord::BrokerFencing {
            node_id: node,
            fenced,
        }];
        let mut probe = image.clone();
        apply(&mut probe, &records);
        records.extend(if fenced {
            on_fenced(&probe, node)
        } else {
            on_unfenced(&probe, node)
        });
        apply(image, &records);
    }

    fn p(image: &MetadataImage, i: usize) -> PartitionImage {
        image.topic("t").unwrap().partitions[i].clone()
    }

    #[test]
    fn replicas_spread_with_leaders_rotating_and_racks_alternating() {
        let img = image(&[(1, None), (2, None), (3, None)], &[]);
        let placed = place(&img, 0, 3, 3).unwrap();
        assert_eq!(placed, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
        let racks = image(
            &[
                (1, Some("a")),
                (2, Some("a")),
                (3, Some("b")),
                (4, Some("b")),
            ],
            &[],
        );
        for replicas in place(&racks, 0, 4, 2).unwrap() {
            let r: Vec<_> = replicas
                .iter()
                .map(|id| racks.brokers[id].rack.clone())
                .collect();
            assert_ne!(r[0], r[1], "{replicas:?} on one rack");
        }
        let err = place(&img, 0, 1, 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Replication factor: 4 larger than available brokers: 3."
        );
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_with_a_new_epoch() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[
                (vec![1, 2, 3], vec![1, 2, 3], 1),
                (vec![2, 3, 1], vec![2, 3], 2),
            ],
        );
        fence(&mut img, 1, true);
        let a = p(&img, 0);
        assert_eq!(
            (a.leader, a.leader_epoch, a.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert_eq!(a.partition_epoch, 1);
        // A follower outside the ISR changes nothing.
        let b = p(&img, 1);
        assert_eq!((b.leader, b.leader_epoch, b.partition_epoch), (2, 0, 0));
    }

    #[test]
    fn without_an_in_sync_replica_the_partition_waits_for_the_last_one() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1], 1)],
        );
        fence(&mut img, 1, true);
        let a = p(&img, 0);
        assert_eq!((a.leader, a.isr.clone()), (NO_LEADER, vec![1]));
        // Another replica coming back does not take over: it may lack acknowledged data.
        fence(&mut img, 2, true);
        fence(&mut img, 2, false);
        assert_eq!(p(&img, 0).leader, NO_LEADER);
        fence(&mut img, 1, false);
        let a = p(&img, 0);
        assert_eq!((a.leader, a.leader_epoch, a.isr.clone()), (1, 2, vec![1]));
    }

    #[test]
    fn unclean_election_takes_any_live_replica_when_enabled() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1], 1)],
        );
        let topic_id = img.topic("t").unwrap().topic_id;
        img.apply(&MetadataRecord::TopicConfig {
            topic_id,
            key: "unclean.leader.election.enable".into(),
            value: Some("true".into()),
        });
        fence(&mut img, 1, true);
        let a = p(&img, 0);
        assert_eq!((a.leader, a.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn preferred_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1, 2, 3], 1)],
        );
        fence(&mut img, 1, true);
        assert_eq!(p(&img, 0).leader, 2);
        let topic = img.topic("t").unwrap().clone();
        let refused = elect(&img, &topic, 0, Election::Preferred).unwrap_err();
        assert_eq!(refused.0, alter_code::PREFERRED_LEADER_NOT_AVAILABLE);
        fence(&mut img, 1, false);
        // Back, but not yet in sync: still refused.
        let topic = img.topic("t").unwrap().clone();
        assert!(elect(&img, &topic, 0, Election::Preferred).is_err());
        assert!(!leaders_imbalanced(&img, 10));
        let pe = p(&img, 0).partition_epoch;
        let req = AlterPartitionRequest {
            topic_id: topic.topic_id,
            partition: 0,
            leader: 2,
            leader_epoch: 1,
            partition_epoch: pe,
            isr: vec![1, 2, 3],
        };
        let (records, _) = alter_partition(&img, &req).unwrap();
        apply(&mut img, &records);
        assert!(leaders_imbalanced(&img, 10));
        let topic = img.topic("t").unwrap().clone();
        let record = elect(&img, &topic, 0, Election::Preferred).unwrap();
        apply(&mut img, &[record]);
        let a = p(&img, 0);
        assert_eq!((a.leader, a.leader_epoch), (1, 2));
        let topic = img.topic("t").unwrap().clone();
        assert_eq!(
            elect(&img, &topic, 0, Election::Preferred).unwrap_err().0,
            alter_code::ELECTION_NOT_NEEDED
        );
        assert!(!leaders_imbalanced(&img, 10));
    }

    #[test]
    fn unclean_election_by_hand_takes_a_live_replica_of_a_leaderless_partition() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1], 1)],
        );
        fence(&mut img, 1, true);
        assert_eq!(p(&img, 0).leader, NO_LEADER);
        let topic = img.topic("t").unwrap().clone();
        let record = elect(&img, &topic, 0, Election::Unclean).unwrap();
        apply(&mut img, &[record]);
        let a = p(&img, 0);
        assert_eq!((a.leader, a.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn alter_partition_is_checked_against_both_epochs() {
        let mut img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1, 2, 3], 1)],
        );
        let topic_id = img.topic("t").unwrap().topic_id;
        let req = |leader, leader_epoch, partition_epoch, isr: &[i32]| AlterPartitionRequest {
            topic_id,
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr: isr.to_vec(),
        };
        let (records, next) = alter_partition(&img, &req(1, 0, 0, &[1, 3])).unwrap();
        assert_eq!(next.isr, vec![1, 3]);
        apply(&mut img, &records);
        // The same request again races nothing new: its partition epoch is stale.
        let stale = alter_partition(&img, &req(1, 0, 0, &[1, 3])).unwrap_err();
        assert_eq!(stale.0, alter_code::INVALID_UPDATE_VERSION);
        assert_eq!(
            alter_partition(&img, &req(2, 0, 1, &[1, 2])).unwrap_err().0,
            alter_code::NOT_LEADER_OR_FOLLOWER
        );
        assert_eq!(
            alter_partition(&img, &req(1, 0, 1, &[2, 3])).unwrap_err().0,
            alter_code::INVALID_REQUEST
        );
        fence(&mut img, 2, true);
        let pe = p(&img, 0).partition_epoch;
        assert_eq!(
            alter_partition(&img, &req(1, 0, pe, &[1, 2, 3]))
                .unwrap_err()
                .0,
            alter_code::INELIGIBLE_REPLICA
        );
        fence(&mut img, 1, true);
        // The old leader, replaced, is fenced by its epoch.
        let pe = p(&img, 0).partition_epoch;
        assert_eq!(
            alter_partition(&img, &req(1, 0, pe, &[1, 3]))
                .unwrap_err()
                .0,
            alter_code::FENCED_LEADER_EPOCH
        );
    }

    #[test]
    fn a_reassignment_completes_once_the_new_replica_joins_the_isr() {
        let mut img = image(
            &[(1, None), (2, None), (3, None), (4, None)],
            &[(vec![1, 2, 3], vec![1, 2, 3], 1)],
        );
        let topic = img.topic("t").unwrap().clone();
        let record = reassign(&img, &topic, 0, Some(&[4, 2, 3]), true)
            .unwrap()
            .unwrap();
        apply(&mut img, &[record]);
        let a = p(&img, 0);
        assert_eq!(a.replicas, vec![4, 2, 3, 1]);
        assert_eq!(
            (a.adding_replicas.clone(), a.removing_replicas.clone()),
            (vec![4], vec![1])
        );
        // Broker 1 keeps leading, with everyone it had in sync, until 4 has caught up.
        assert_eq!(
            (a.leader, a.leader_epoch, a.isr.clone()),
            (1, 0, vec![2, 3, 1])
        );
        assert_eq!(a.original_replicas(), vec![2, 3, 1]);
        assert_eq!(a.target_replicas(), vec![4, 2, 3]);
        let req = AlterPartitionRequest {
            topic_id: topic.topic_id,
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            partition_epoch: a.partition_epoch,
            isr: vec![1, 2, 3, 4],
        };
        let (records, next) = alter_partition(&img, &req).unwrap();
        apply(&mut img, &records);
        let a = p(&img, 0);
        assert_eq!(a, next);
        assert_eq!(
            (a.replicas.clone(), a.isr.clone()),
            (vec![4, 2, 3], vec![4, 2, 3])
        );
        assert!(!a.reassigning());
        // The leader was removed: the first target replica leads, in a new epoch.
        assert_eq!((a.leader, a.leader_epoch), (4, 1));
    }

    #[test]
    fn a_cancelled_reassignment_returns_to_the_original_replicas() {
        let mut img = image(
            &[(1, None), (2, None), (3, None), (4, None)],
            &[(vec![1, 2], vec![1, 2], 1)],
        );
        let topic = img.topic("t").unwrap().clone();
        assert_eq!(
            reassign(&img, &topic, 0, None, true).unwrap_err().0,
            alter_code::NO_REASSIGNMENT_IN_PROGRESS
        );
        let record = reassign(&img, &topic, 0, Some(&[3, 4]), true)
            .unwrap()
            .unwrap();
        apply(&mut img, &[record]);
        assert_eq!(p(&img, 0).replicas, vec![3, 4, 1, 2]);
        let topic = img.topic("t").unwrap().clone();
        let record = reassign(&img, &topic, 0, None, true).unwrap().unwrap();
        apply(&mut img, &[record]);
        let a = p(&img, 0);
        assert_eq!(
            (a.replicas.clone(), a.isr.clone(), a.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
        assert!(!a.reassigning());
    }

    #[test]
    fn reassignments_are_checked_and_a_reorder_applies_at_once() {
        let img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2], vec![1, 2], 1)],
        );
        let topic = img.topic("t").unwrap().clone();
        let code = |target: &[i32], allow| {
            reassign(&img, &topic, 0, Some(target), allow)
                .unwrap_err()
                .0
        };
        assert_eq!(code(&[], true), alter_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[2, 2], true), alter_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(code(&[1, 9], true), alter_code::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(
            code(&[1, 2, 3], false),
            alter_code::INVALID_REPLICATION_FACTOR
        );
        assert_eq!(
            reassign(&img, &topic, 5, Some(&[1]), true).unwrap_err().0,
            alter_code::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(reassign(&img, &topic, 0, Some(&[1, 2]), true), Ok(None));
        let Some(MetadataRecord::Partition {
            replicas,
            isr,
            leader,
            adding_replicas,
            removing_replicas,
            ..
        }) = reassign(&img, &topic, 0, Some(&[2, 1]), true).unwrap()
        else {
            panic!("a reorder is a partition change");
        };
        assert_eq!((replicas, isr, leader), (vec![2, 1], vec![2, 1], 1));
        assert!(adding_replicas.is_empty() && removing_replicas.is_empty());
        // Shrinking to replicas already in sync completes at once too.
        let Some(MetadataRecord::Partition { replicas, isr, .. }) =
            reassign(&img, &topic, 0, Some(&[2]), true).unwrap()
        else {
            panic!("a shrink is a partition change");
        };
        assert_eq!((replicas, isr), (vec![2], vec![2]));
    }

    #[test]
    fn a_replica_leaving_the_assignment_fences_it_with_a_new_leader_epoch() {
        let img = image(
            &[(1, None), (2, None), (3, None)],
            &[(vec![1, 2, 3], vec![1, 2, 3], 1)],
        );
        let topic = img.topic("t").unwrap().clone();
        let Some(MetadataRecord::Partition {
            replicas,
            leader,
            leader_epoch,
            ..
        }) = reassign(&img, &topic, 0, Some(&[1, 2]), true).unwrap()
        else {
            panic!("a shrink is a partition change");
        };
        // Same leader, yet a new epoch: replica 3's fetches in the old one no longer count.
        assert_eq!((replicas, leader, leader_epoch), (vec![1, 2], 1, 1));
        let Some(MetadataRecord::Partition { leader_epoch, .. }) =
            reassign(&img, &topic, 0, Some(&[3, 2, 1]), true).unwrap()
        else {
            panic!("a reorder is a partition change");
        };
        assert_eq!(leader_epoch, 0, "nobody left: no new epoch");
    }
}
