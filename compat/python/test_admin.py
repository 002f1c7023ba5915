"""Admin API through confluent-kafka's AdminClient (librdkafka) and kafka-python's
KafkaAdminClient: topic lifecycle, partitions, configs, DeleteRecords, ListOffsets."""
import time

import pytest
from confluent_kafka import TopicCollection, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, OffsetSpec, ResourceType)

from helpers import admin, create_topic, produce_checked, producer, consume_n, unique, WAIT_S


def broker_ids(a):
    return set(a.list_topics(timeout=10).brokers)


def describe_topic_config(a, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=15)[res].result(timeout=20)


def test_create_list_describe(bootstrap):
    a = admin(bootstrap)
    t = unique("adm-create")
    create_topic(bootstrap, t, partitions=3, config={"retention.ms": "123456"},
                 replication_factor=1)
    brokers = broker_ids(a)

    # list: present in full metadata and in the admin listing, with 3 partitions, each
    # with the one replica asked for, which leads and is in sync
    md = a.list_topics(timeout=10)
    assert t in md.topics
    assert sorted(md.topics[t].partitions) == [0, 1, 2]
    leaders = {}
    for p in md.topics[t].partitions.values():
        assert p.leader in brokers
        assert p.replicas == [p.leader]
        assert p.isrs == [p.leader]
        leaders[p.id] = p.leader

    # DescribeTopics: the same
    desc = a.describe_topics(TopicCollection([t]), request_timeout=15)[t].result(timeout=20)
    assert desc.name == t
    assert desc.is_internal is False
    assert [p.id for p in desc.partitions] == [0, 1, 2]
    for p in desc.partitions:
        assert p.leader.id == leaders[p.id]
        assert [n.id for n in p.replicas] == [leaders[p.id]]
        assert [n.id for n in p.isr] == [leaders[p.id]]


def test_delete_topic_disappears(bootstrap):
    a = admin(bootstrap)
    t = create_topic(bootstrap, unique("adm-delete"), partitions=2)
    a.delete_topics([t], request_timeout=15)[t].result(timeout=20)
    deadline = time.monotonic() + WAIT_S
    while True:
        md = a.list_topics(timeout=10)
        if t not in md.topics:
            break
        assert time.monotonic() < deadline, f"{t} still listed {WAIT_S}s after delete"
        time.sleep(0.2)
    # Asking for it by name now answers UNKNOWN_TOPIC_OR_PART. The admin handle is a
    # producer, whose metadata requests allow auto-creation by default, so ask through a
    # handle that does not (otherwise the broker would rightly create the topic anew).
    no_create = AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})
    md = no_create.list_topics(topic=t, timeout=10)
    assert md.topics[t].error is not None
    assert md.topics[t].error.code() == 3  # UNKNOWN_TOPIC_OR_PARTITION


def test_create_partitions_increases_count(bootstrap):
    a = admin(bootstrap)
    t = create_topic(bootstrap, unique("adm-parts"), partitions=2)
    a.create_partitions([NewPartitions(t, 5)], request_timeout=15)[t].result(timeout=20)
    deadline = time.monotonic() + WAIT_S
    while True:
        desc = a.describe_topics(TopicCollection([t]), request_timeout=15)[t].result(timeout=20)
        if len(desc.partitions) == 5:
            break
        assert time.monotonic() < deadline, f"still {len(desc.partitions)} partitions"
        time.sleep(0.2)
    assert [p.id for p in desc.partitions] == [0, 1, 2, 3, 4]
    # the new partitions take writes
    p = producer(bootstrap)
    msgs = produce_checked(p, t, [(None, b"to-4")], partition=4)
    assert msgs[0].partition() == 4 and msgs[0].offset() == 0


def test_describe_configs_topic(bootstrap):
    a = admin(bootstrap)
    t = create_topic(bootstrap, unique("adm-cfg"), config={"retention.ms": "123456"})
    cfg = describe_topic_config(a, t)
    rm = cfg["retention.ms"]
    assert rm.value == "123456"
    assert rm.is_default is False
    assert rm.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    cp = cfg["cleanup.policy"]
    assert cp.value == "delete"
    assert cp.is_default is True
    # a topic without the override reports Kafka's default (7 days) as default
    t2 = create_topic(bootstrap, unique("adm-cfg-default"))
    rm2 = describe_topic_config(a, t2)["retention.ms"]
    assert rm2.value == "604800000"
    assert rm2.is_default is True


def test_incremental_alter_configs(bootstrap):
    a = admin(bootstrap)
    t = create_topic(bootstrap, unique("adm-alter"))
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "3600000",
                    incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "65536",
                    incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    deadline = time.monotonic() + WAIT_S
    while True:
        cfg = describe_topic_config(a, t)
        if cfg["retention.ms"].value == "3600000":
            break
        assert time.monotonic() < deadline, f"retention.ms still {cfg['retention.ms'].value}"
        time.sleep(0.2)
    assert cfg["retention.ms"].is_default is False
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value == "65536"
    assert cfg["max.message.bytes"].is_default is False

    # DELETE puts retention.ms back to the default
    res = ConfigResource(ResourceType.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)
    deadline = time.monotonic() + WAIT_S
    while True:
        cfg = describe_topic_config(a, t)
        if cfg["retention.ms"].is_default:
            break
        assert time.monotonic() < deadline, "retention.ms override not removed"
        time.sleep(0.2)
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["max.message.bytes"].value == "65536"  # untouched


def test_delete_records_advances_log_start(bootstrap):
    a = admin(bootstrap)
    t = create_topic(bootstrap, unique("adm-delrec"))
    p = producer(bootstrap)
    produce_checked(p, t, [(None, f"v{i}".encode()) for i in range(10)], partition=0)
    tp = TopicPartition(t, 0, 4)
    res = a.delete_records([tp], request_timeout=15)
    deleted = list(res.values())[0].result(timeout=20)
    assert deleted.low_watermark == 4

    offs = a.list_offsets({TopicPartition(t, 0): OffsetSpec.earliest()}, request_timeout=15)
    assert list(offs.values())[0].result(timeout=20).offset == 4
    offs = a.list_offsets({TopicPartition(t, 0): OffsetSpec.latest()}, request_timeout=15)
    assert list(offs.values())[0].result(timeout=20).offset == 10

    # reading from the beginning starts at offset 4
    msgs = consume_n(bootstrap, t, [0], 6, offset=-2)  # OFFSET_BEGINNING
    assert [m.offset() for m in msgs] == list(range(4, 10))
    assert msgs[0].value() == b"v4"


def test_kafka_python_admin_lifecycle(bootstrap):
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic
    from kafka.errors import TopicAlreadyExistsError
    ka = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        t = unique("adm-kp")
        ka.create_topics([KNewTopic(t, 4, 1, topic_configs={"retention.ms": "7777"})])
        deadline = time.monotonic() + WAIT_S
        while t not in ka.list_topics():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        d = ka.describe_topics([t])
        assert len(d) == 1 and d[0]["name"] == t and d[0]["error_code"] == 0
        assert sorted(p["partition_index"] for p in d[0]["partitions"]) == [0, 1, 2, 3]
        for p in d[0]["partitions"]:
            assert p["error_code"] == 0
            assert p["replica_nodes"] == [p["leader_id"]]
            assert p["isr_nodes"] == [p["leader_id"]]
        with pytest.raises(TopicAlreadyExistsError):
            ka.create_topics([KNewTopic(t, 1, 1)], raise_errors=True)
        ka.delete_topics([t])
        deadline = time.monotonic() + WAIT_S
        while t in ka.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            time.sleep(0.2)
    finally:
        ka.close()
