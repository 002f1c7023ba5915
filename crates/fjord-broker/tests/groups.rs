//! Consumer groups over TCP: coordinator lookup, the join/sync handshake of two members,
//! heartbeats through a rebalance, committed offsets across a restart, and the admin APIs.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{commit_req, s, wait_for_coordinator, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;

const PROPS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("group.min.session.timeout.ms", "100"),
    ("offsets.topic.num.partitions", "3"),
];

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

async fn create_topic(c: &mut Client, topic: &str, partitions: i32) {
    let resp = c
        .request(
            CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)])
                .with_timeout_ms(5000),
            7,
        )
        .await;
    assert_eq!(resp.topics[0].error_code, 0);
}

fn join_req(group: &str, member: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"sub"))])
}

/// The two-step join of a new member; returns the completed JoinGroup response.
async fn join(c: &mut Client, group: &str, session_ms: i32) -> JoinGroupResponse {
    let mut first = c.request(join_req(group, "", session_ms), 9).await;
    // Right after start the coordinator may still be loading; clients retry.
    for _ in 0..100 {
        if first.error_code != 14 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        first = c.request(join_req(group, "", session_ms), 9).await;
    }
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED first");
    assert!(!first.member_id.is_empty());
    c.request(join_req(group, &first.member_id, session_ms), 9)
        .await
}

async fn sync(
    c: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    c.request(
        SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            ),
        5,
    )
    .await
}

async fn heartbeat(c: &mut Client, group: &str, member: &str, generation: i32) -> i16 {
    c.request(
        HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(s(member)),
        4,
    )
    .await
    .error_code
}

async fn fetch_offsets(
    c: &mut Client,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i64, String)> {
    let resp = c
        .request(
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(partitions.to_vec())]))]),
            8,
        )
        .await;
    assert_eq!(resp.groups[0].error_code, 0);
    resp.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.committed_offset,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_members_rebalance_commit_and_survive_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut admin = broker.client().await;
    wait_for_coordinator(&mut admin).await;
    create_topic(&mut admin, "orders", 3).await;

    let found = admin
        .request(
            FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("g1"), s("g2")]),
            4,
        )
        .await;
    assert_eq!(found.coordinators.len(), 2);
    for c in &found.coordinators {
        assert_eq!(c.error_code, 0);
        assert_eq!(c.port as u16, broker.addr.port());
    }

    // First member: leader of generation 1.
    let mut a = broker.client().await;
    let ja = join(&mut a, "g1", 10_000).await;
    assert_eq!((ja.error_code, ja.generation_id), (0, 1));
    assert_eq!(ja.leader, ja.member_id);
    let a_id = ja.member_id.to_string();
    let sa = sync(&mut a, "g1", &a_id, 1, &[(&a_id, b"all")]).await;
    assert_eq!((sa.error_code, &sa.assignment[..]), (0, &b"all"[..]));
    assert_eq!(heartbeat(&mut a, "g1", &a_id, 1).await, 0);

    // Second member: its join waits until the first rejoins.
    let addr = broker.addr;
    let second = tokio::spawn(async move {
        let mut b = Client::connect(addr).await;
        let jb = join(&mut b, "g1", 10_000).await;
        (b, jb)
    });
    let mut rebalancing = false;
    for _ in 0..50 {
        match heartbeat(&mut a, "g1", &a_id, 1).await {
            27 => {
                rebalancing = true;
                break;
            }
            0 => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("unexpected heartbeat error {other}"),
        }
    }
    assert!(
        rebalancing,
        "the first member learns of the rebalance by heartbeat"
    );
    let ja2 = a.request(join_req("g1", &a_id, 10_000), 9).await;
    let (mut b, jb) = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("second join completes")
        .expect("task");
    assert_eq!((ja2.error_code, jb.error_code), (0, 0));
    assert_eq!((ja2.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja2.leader.to_string(), a_id, "the leader keeps its role");
    assert_eq!(ja2.members.len(), 2);
    assert!(jb.members.is_empty());
    let b_id = jb.member_id.to_string();

    // The follower's sync waits for the leader's.
    let follower = tokio::spawn(async move {
        let r = sync(&mut b, "g1", &b_id, 2, &[]).await;
        (b, b_id, r)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sa2 = sync(
        &mut a,
        "g1",
        &a_id,
        2,
        &[(&a_id, b"p0"), (jb.member_id.as_str(), b"p1p2")],
    )
    .await;
    let (mut b, b_id, sb) = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("follower sync completes")
        .expect("task");
    assert_eq!(&sa2.assignment[..], b"p0");
    assert_eq!(&sb.assignment[..], b"p1p2");

    // Stale generation and unknown members are refused without disturbing the group.
    assert_eq!(heartbeat(&mut b, "g1", &b_id, 1).await, 22);
    assert_eq!(heartbeat(&mut b, "g1", "nobody", 2).await, 25);
    let stale = b
        .request(commit_req("g1", &b_id, 1, "orders", &[(1, 5)]), 8)
        .await;
    assert_eq!(stale.topics[0].partitions[0].error_code, 22);
    assert_eq!(heartbeat(&mut a, "g1", &a_id, 2).await, 0);

    // Commits, including one to a partition that does not exist.
    let committed = a
        .request(
            commit_req("g1", &a_id, 2, "orders", &[(0, 10), (1, 20), (9, 1)]),
            9,
        )
        .await;
    let codes: Vec<i16> = committed.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 0, 3]);
    assert_eq!(
        fetch_offsets(&mut b, "g1", "orders", &[0, 1, 2]).await,
        vec![
            (10, "meta-0".into()),
            (20, "meta-1".into()),
            (-1, String::new())
        ]
    );

    let described = admin
        .request(
            DescribeGroupsRequest::default().with_groups(vec![gid("g1"), gid("nope")]),
            5,
        )
        .await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members.len(), 2);
    assert_eq!(described.groups[0].protocol_data.as_str(), "range");
    // Members are shown with the address they connected from, as Kafka's tools print it.
    for m in &described.groups[0].members {
        assert_eq!(m.client_host.as_str(), "/127.0.0.1");
    }
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    // Non-empty groups cannot be deleted.
    let del = admin
        .request(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("g1"), gid("nope")]),
            2,
        )
        .await;
    assert_eq!(del.results[0].error_code, 68);
    assert_eq!(del.results[1].error_code, 69);

    // b leaves: a must rejoin alone, generation 3.
    let left = b
        .request(
            LeaveGroupRequest::default()
                .with_group_id(gid("g1"))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s(&b_id))
                ]),
            5,
        )
        .await;
    assert_eq!(left.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut a, "g1", &a_id, 2).await, 27);
    let ja3 = a.request(join_req("g1", &a_id, 10_000), 9).await;
    assert_eq!(
        (ja3.error_code, ja3.generation_id, ja3.members.len()),
        (0, 3, 1)
    );

    // Restart: the offsets (and metadata strings) come back from __consumer_offsets.
    drop((a, b, admin));
    broker.stop().await;
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    let mut offsets = None;
    for _ in 0..100 {
        let resp = c
            .request(
                OffsetFetchRequest::default()
                    .with_group_id(gid("g1"))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("orders")))
                            .with_partition_indexes(vec![0, 1]),
                    ])),
                7,
            )
            .await;
        if resp.error_code == 14 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert_eq!(resp.error_code, 0);
        offsets = Some(
            resp.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect::<Vec<_>>(),
        );
        break;
    }
    assert_eq!(offsets, Some(vec![10, 20]));
    let listed = c.request(ListGroupsRequest::default(), 4).await;
    assert!(listed.groups.iter().any(|g| g.group_id.0.as_str() == "g1"));
    broker.stop().await;
}

#[tokio::test]
async fn silent_member_is_expired_and_group_empties() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut a = broker.client().await;
    let ja = join(&mut a, "quiet", 300).await;
    let id = ja.member_id.to_string();
    assert_eq!(sync(&mut a, "quiet", &id, 1, &[]).await.error_code, 0);
    // No heartbeats: the 300 ms session lapses and the timer removes the member.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(heartbeat(&mut a, "quiet", &id, 1).await, 25);
    let listed = a
        .request(
            ListGroupsRequest::default().with_states_filter(vec![s("empty")]),
            5,
        )
        .await;
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id.0.as_str() == "quiet"));
    broker.stop().await;
}

#[tokio::test]
async fn group_errors_match_kafka() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut c = broker.client().await;
    wait_for_coordinator(&mut c).await;
    create_topic(&mut c, "t", 1).await;
    let bad_session = c.request(join_req("g", "", 10), 9).await;
    assert_eq!(bad_session.error_code, 26, "INVALID_SESSION_TIMEOUT");
    let no_group = c.request(join_req("", "", 1000), 9).await;
    assert_eq!(no_group.error_code, 24, "INVALID_GROUP_ID");
    let unknown = c.request(join_req("g", "made-up", 1000), 9).await;
    assert_eq!(unknown.error_code, 25, "UNKNOWN_MEMBER_ID");

    // A committer outside any group (admin tools) may commit to an empty group.
    let simple = c
        .request(commit_req("tools", "", -1, "t", &[(0, 7)]), 8)
        .await;
    assert_eq!(simple.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_offsets(&mut c, "tools", "t", &[0]).await,
        vec![(7, "meta-0".into())]
    );
    // Kafka takes a negative generation as a simple commit whatever member id comes with
    // it (librdkafka sends its own), and an unknown partition gets its own error.
    let with_member = c
        .request(commit_req("manual", "rdkafka-1", -1, "t", &[(0, 9)]), 8)
        .await;
    assert_eq!(with_member.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_offsets(&mut c, "manual", "t", &[0]).await,
        vec![(9, "meta-0".into())]
    );
    let unknown_partition = c
        .request(commit_req("manual", "rdkafka-1", -1, "t", &[(5, 1)]), 8)
        .await;
    assert_eq!(
        unknown_partition.topics[0].partitions[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let deleted = c
        .request(
            OffsetDeleteRequest::default()
                .with_group_id(gid("tools"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
            0,
        )
        .await;
    assert_eq!(deleted.error_code, 0);
    assert_eq!(
        fetch_offsets(&mut c, "tools", "t", &[0]).await,
        vec![(-1, String::new())]
    );
    let del = c
        .request(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("tools")]),
            2,
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    let del = c
        .request(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("tools")]),
            2,
        )
        .await;
    assert_eq!(del.results[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    broker.stop().await;
}

/// Joins a static member with the given session and completes its first generation.
async fn join_static(
    c: &mut Client,
    group: &str,
    instance: &str,
    session_ms: i32,
) -> (String, i32) {
    let req = join_req(group, "", session_ms).with_group_instance_id(Some(s(instance)));
    let joined = c.request(req, 9).await;
    assert_eq!(joined.error_code, 0, "a static member joins in one step");
    let id = joined.member_id.to_string();
    let synced = sync(c, group, &id, joined.generation_id, &[(&id, b"x")]).await;
    assert_eq!(synced.error_code, 0);
    (id, joined.generation_id)
}

/// The session ends at its timeout even if the coordinator's timer has not run yet: a
/// request that arrives later is answered as Kafka would, the member already gone.
#[tokio::test]
async fn a_late_timer_does_not_extend_a_session() {
    const SESSION_MS: u64 = 500;
    let tmp = tempfile::tempdir().expect("tempdir");
    let broker = TestBroker::start_in(tmp.path(), PROPS).await;
    let mut a = broker.client().await;
    wait_for_coordinator(&mut a).await;
    let group = "late-timer";
    let (id, generation) = join_static(&mut a, group, "instance-1", SESSION_MS as i32).await;
    let sent = std::time::Instant::now();
    assert_eq!(heartbeat(&mut a, group, &id, generation).await, 0);
    // Stall the runtime the broker runs on (this test's own thread) past the session's
    // end: the timer task and the next request then become ready together, and
    // whichever runs first, the session must be over.
    let past = sent + Duration::from_millis(SESSION_MS + 200);
    std::thread::sleep(past.saturating_duration_since(std::time::Instant::now()));
    // UNKNOWN_MEMBER_ID: the session ended; the heartbeat must not revive it.
    assert_eq!(heartbeat(&mut a, group, &id, generation).await, 25);
    broker.stop().await;
}
