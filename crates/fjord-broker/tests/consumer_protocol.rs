//! The new consumer group protocol (KIP-848) over TCP: members joining with epoch 0,
//! revocation before reassignment, epochs on offset commits, ConsumerGroupDescribe,
//! ListGroups types, protocol mixing, leaving and session expiry.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::{s, wait_for_coordinator, Client, TestBroker};
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use uuid::Uuid;

const PROPS: &[(&str, &str)] = &[
    ("offsets.topic.num.partitions", "3"),
    ("group.consumer.session.timeout.ms", "1500"),
    ("group.consumer.heartbeat.interval.ms", "200"),
];

const FENCED_MEMBER_EPOCH: i16 = 110;
const STALE_MEMBER_EPOCH: i16 = 113;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_REQUEST: i16 = 42;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;

/// A member as the test drives it: its id, epoch and what it owns.
struct Member {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

fn join_req(group: &str, id: &str, topic: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(10_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]))
        .with_topic_partitions(Some(vec![]))
}

fn partitions_of(resp: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    resp.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect()
    })
}

async fn beat(
    c: &mut Client,
    group: &str,
    m: &mut Member,
    topic_id: Uuid,
) -> ConsumerGroupHeartbeatResponse {
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(&m.id))
        .with_member_epoch(m.epoch)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic_id(topic_id)
            .with_partitions(m.owned.iter().copied().collect())]));
    let r = c.request(req, 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    m.epoch = r.member_epoch;
    if let Some(p) = partitions_of(&r) {
        m.owned = p;
    }
    r
}

fn commit_req(group: &str, member: &str, epoch: i32, topic: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("m")))])])
}

#[tokio::test]
async fn members_reconcile_commit_with_epochs_and_leave() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    let topic = "kip848";
    let created = c
        .request(
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_num_partitions(3)
                    .with_replication_factor(1)])
                .with_timeout_ms(5000),
            7,
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    let group = "g848";

    // The API is advertised.
    let versions = c.request(ApiVersionsRequest::default(), 3).await;
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ConsumerGroupHeartbeat as i16 && k.max_version == 1));

    // A first heartbeat without a rebalance timeout is refused.
    let bad = c
        .request(join_req(group, "x", topic).with_rebalance_timeout_ms(-1), 1)
        .await;
    assert_eq!(bad.error_code, INVALID_REQUEST);

    // A joins alone and owns all three partitions.
    let r = c.request(join_req(group, "member-a", topic), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.heartbeat_interval_ms, 200);
    let mut a = Member {
        id: "member-a".into(),
        epoch: r.member_epoch,
        owned: partitions_of(&r).expect("assignment on join"),
    };
    assert_eq!(a.owned, BTreeSet::from([0, 1, 2]));
    assert!(a.epoch > 0);

    // B joins with an empty member id (the coordinator picks one): nothing is free yet.
    let r = c.request(join_req(group, "", topic), 0).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let mut b = Member {
        id: r.member_id.as_ref().expect("member id").to_string(),
        epoch: r.member_epoch,
        owned: partitions_of(&r).unwrap_or_default(),
    };
    assert!(!b.id.is_empty());
    assert!(b.owned.is_empty(), "B got partitions A still owns");

    // A learns its smaller assignment; until it confirms, its epoch stays and B waits.
    let epoch_before = a.epoch;
    let still_owned = a.owned.clone();
    let r = beat(&mut c, group, &mut a, topic_id).await;
    let smaller = partitions_of(&r).expect("new assignment");
    assert!(smaller.len() < 3);
    assert_eq!(r.member_epoch, epoch_before);
    let mut stubborn = Member {
        id: a.id.clone(),
        epoch: a.epoch,
        owned: still_owned,
    };
    beat(&mut c, group, &mut stubborn, topic_id).await;
    beat(&mut c, group, &mut b, topic_id).await;
    assert!(b.owned.is_empty(), "B got a partition A has not released");

    // A confirms; it advances, then B gets the released partitions.
    beat(&mut c, group, &mut a, topic_id).await;
    assert!(a.epoch > epoch_before);
    beat(&mut c, group, &mut b, topic_id).await;
    assert_eq!(b.epoch, a.epoch);
    assert!(a.owned.is_disjoint(&b.owned));
    assert_eq!(a.owned.len() + b.owned.len(), 3);

    // Epoch and member checks.
    let r = c
        .request(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(&a.id))
                .with_member_epoch(a.epoch + 7),
            1,
        )
        .await;
    assert_eq!(r.error_code, FENCED_MEMBER_EPOCH);
    let r = c
        .request(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s("nobody"))
                .with_member_epoch(3),
            1,
        )
        .await;
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);

    // Offsets: the member epoch must be current.
    let r = c
        .request(commit_req(group, &b.id, b.epoch - 1, topic), 9)
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, STALE_MEMBER_EPOCH);
    let r = c.request(commit_req(group, &b.id, b.epoch, topic), 9).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let fetch = |member: &str, epoch: i32| {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(Some(s(member)))
            .with_member_epoch(epoch)
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![0])]))])
    };
    let r = c.request(fetch(&b.id, b.epoch - 1), 9).await;
    assert_eq!(r.groups[0].error_code, STALE_MEMBER_EPOCH);
    let r = c.request(fetch(&b.id, b.epoch), 9).await;
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 42);

    // ConsumerGroupDescribe: both members, each with its assignment equal to its target.
    let d = c
        .request(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
            1,
        )
        .await;
    let g = &d.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert_eq!(m.assignment, m.target_assignment);
        assert_eq!(m.member_type, 1);
    }

    // ListGroups separates the two protocols.
    let listed = |types: &[&str]| {
        ListGroupsRequest::default().with_types_filter(types.iter().map(|t| s(t)).collect())
    };
    let r = c.request(listed(&["consumer"]), 5).await;
    assert!(r
        .groups
        .iter()
        .any(|g| g.group_id.0.as_str() == group && g.group_type.as_str() == "consumer"));
    let r = c.request(listed(&["classic"]), 5).await;
    assert!(r.groups.iter().all(|g| g.group_id.0.as_str() != group));

    // A classic member cannot join a group that runs the new protocol.
    let j = c
        .request(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"sub"))]),
            9,
        )
        .await;
    assert_eq!(j.error_code, INCONSISTENT_GROUP_PROTOCOL);

    // A leaves (epoch -1): B takes everything on its next heartbeat.
    let r = c
        .request(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(&a.id))
                .with_member_epoch(-1),
            1,
        )
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_epoch, -1);
    beat(&mut c, group, &mut b, topic_id).await;
    assert_eq!(b.owned, BTreeSet::from([0, 1, 2]));

    // B goes silent: its session (1.5 s) ends and the group is empty.
    let mut empty = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = c
            .request(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
                0,
            )
            .await;
        if d.groups[0].members.is_empty() {
            assert_eq!(d.groups[0].group_state.as_str(), "Empty");
            empty = true;
            break;
        }
    }
    assert!(empty, "the silent member never expired");

    // The committed offset survives a restart (the membership does not).
    drop(c);
    broker.stop().await;
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    let r = c
        .request(
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(vec![0])]))]),
            9,
        )
        .await;
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 42);
    // Membership is in memory only: an old member is told to rejoin.
    let r = c
        .request(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(&b.id))
                .with_member_epoch(b.epoch),
            1,
        )
        .await;
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    let r = c.request(join_req(group, &b.id, topic), 1).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(partitions_of(&r), Some(BTreeSet::from([0, 1, 2])));
    broker.stop().await;
}

/// Topic id → name, as the broker's metadata reports them.
async fn topic_ids(c: &mut Client) -> std::collections::HashMap<Uuid, String> {
    let md = c
        .request(MetadataRequest::default().with_topics(None), 12)
        .await;
    md.topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| (t.topic_id, n.0.to_string())))
        .collect()
}

#[tokio::test]
async fn regex_subscriptions_are_resolved_by_the_broker_and_follow_new_topics() {
    const INVALID_REGULAR_EXPRESSION: i16 = 128;
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    for t in ["regex-a", "not-regex-x"] {
        assert_eq!(
            common::create(&mut c, t, 2, 1).await.topics[0].error_code,
            0
        );
    }
    let group = "g-regex";
    let join = |regex: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s("m1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(10_000)
            .with_subscribed_topic_regex(Some(s(regex)))
            .with_topic_partitions(Some(vec![]))
    };

    // An invalid regex is refused with Kafka's code and message.
    let r = c.request(join("regex-("), 1).await;
    assert_eq!(r.error_code, INVALID_REGULAR_EXPRESSION);
    let msg = r.error_message.map(|m| m.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with("SubscribedTopicRegex `regex-(` is not a valid regular expression: "),
        "{msg}"
    );

    // Subscribed by regex alone (no topic names): the whole name must match.
    let r = c.request(join("regex-.*"), 1).await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let ids = topic_ids(&mut c).await;
    let named = |r: &ConsumerGroupHeartbeatResponse| -> Option<BTreeSet<(String, i32)>> {
        r.assignment.as_ref().map(|a| {
            a.topic_partitions
                .iter()
                .flat_map(|t| {
                    let name = ids.get(&t.topic_id).cloned().unwrap_or_default();
                    t.partitions.iter().map(move |p| (name.clone(), *p))
                })
                .collect()
        })
    };
    let mut owned = named(&r).unwrap_or_default();
    let mut epoch = r.member_epoch;
    assert_eq!(
        owned,
        [("regex-a".to_string(), 0), ("regex-a".to_string(), 1)].into()
    );
    let d = c
        .request(
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]),
            0,
        )
        .await;
    assert_eq!(
        d.groups[0].members[0]
            .subscribed_topic_regex
            .as_ref()
            .map(|r| r.to_string()),
        Some("regex-.*".to_string())
    );

    // A new matching topic: later heartbeats grow the assignment.
    assert_eq!(
        common::create(&mut c, "regex-b", 1, 1).await.topics[0].error_code,
        0
    );
    let ids = topic_ids(&mut c).await;
    let id_of = |name: &str| ids.iter().find(|(_, n)| *n == name).map(|(id, _)| *id);
    let want: BTreeSet<(String, i32)> = [
        ("regex-a".to_string(), 0),
        ("regex-a".to_string(), 1),
        ("regex-b".to_string(), 0),
    ]
    .into();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while owned != want {
        assert!(
            std::time::Instant::now() < deadline,
            "assignment stayed {owned:?}"
        );
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for (t, p) in &owned {
            by_topic.entry(t).or_default().push(*p);
        }
        let tps = by_topic
            .into_iter()
            .filter_map(|(t, ps)| {
                id_of(t).map(|id| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(ps)
                })
            })
            .collect();
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s("m1"))
            .with_member_epoch(epoch)
            .with_topic_partitions(Some(tps));
        let r = c.request(req, 1).await;
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        epoch = r.member_epoch;
        let ids_now = topic_ids(&mut c).await;
        if let Some(a) = r.assignment.as_ref() {
            owned = a
                .topic_partitions
                .iter()
                .flat_map(|t| {
                    let name = ids_now.get(&t.topic_id).cloned().unwrap_or_default();
                    t.partitions.iter().map(move |p| (name.clone(), *p))
                })
                .collect();
        }
        // The member heartbeats at the interval the broker asks for.
        tokio::time::sleep(Duration::from_millis(r.heartbeat_interval_ms.max(1) as u64)).await;
    }
}
