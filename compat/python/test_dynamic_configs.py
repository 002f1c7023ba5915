"""Dynamic broker and group configs through confluent-kafka's AdminClient, as
kafka-configs.sh --entity-type brokers / groups uses them."""
import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, ResourceType)

from helpers import admin, unique, WAIT_S


def a_broker_id(a):
    """One broker's id: the lowest in metadata (on one node, the only one). A broker
    config is altered and described on that broker alone."""
    md = a.list_topics(timeout=10)
    assert md.brokers, "metadata lists no broker"
    return str(min(md.brokers))


def alter(a, res):
    a.incremental_alter_configs([res], request_timeout=15)[res].result(timeout=20)


def describe(a, res):
    return a.describe_configs([res], request_timeout=15)[res].result(timeout=20)


def wait_for(a, res, name, check):
    deadline = time.monotonic() + WAIT_S
    while True:
        entry = describe(a, res).get(name)
        if check(entry):
            return entry
        assert time.monotonic() < deadline, f"{name} is {entry}"
        time.sleep(0.2)


def test_broker_config_set_described_and_deleted(bootstrap):
    a = admin(bootstrap)
    broker = ConfigResource(ResourceType.BROKER, a_broker_id(a))
    # A value no other test depends on: larger than the default, so nothing is refused.
    alter(a, ConfigResource(ResourceType.BROKER, broker.name, incremental_configs=[
        ConfigEntry("message.max.bytes", "2097152", incremental_operation=AlterConfigOpType.SET)]))
    try:
        entry = wait_for(a, broker, "message.max.bytes", lambda e: e and e.value == "2097152")
        assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert entry.is_read_only is False
        assert describe(a, broker)["log.dirs"].is_read_only is True

        # A setting Kafka does not change at runtime is refused for the whole resource.
        with pytest.raises(KafkaException) as e:
            alter(a, ConfigResource(ResourceType.BROKER, broker.name, incremental_configs=[
                ConfigEntry("log.dirs", "/elsewhere", incremental_operation=AlterConfigOpType.SET)]))
        assert "Cannot update these configs dynamically" in str(e.value)
    finally:
        alter(a, ConfigResource(ResourceType.BROKER, broker.name, incremental_configs=[
            ConfigEntry("message.max.bytes", None, incremental_operation=AlterConfigOpType.DELETE)]))
    entry = wait_for(a, broker, "message.max.bytes", lambda e: e and e.value == "1048588")
    assert entry.source != ConfigSource.DYNAMIC_BROKER_CONFIG.value


def test_group_config_set_described_and_deleted(bootstrap):
    a = admin(bootstrap)
    group = unique("dyn-group")
    res = ConfigResource(ResourceType.GROUP, group)
    # A group nobody configured reports the broker's value.
    default = describe(a, res)["consumer.session.timeout.ms"]
    assert default.source == ConfigSource.DEFAULT_CONFIG.value
    alter(a, ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", "50000",
                    incremental_operation=AlterConfigOpType.SET)]))
    entry = wait_for(a, res, "consumer.session.timeout.ms", lambda e: e and e.value == "50000")
    assert entry.source == ConfigSource.GROUP_CONFIG.value

    # Below Kafka's group.consumer.min.session.timeout.ms: refused.
    with pytest.raises(KafkaException):
        alter(a, ConfigResource(ResourceType.GROUP, group, incremental_configs=[
            ConfigEntry("consumer.session.timeout.ms", "1000",
                        incremental_operation=AlterConfigOpType.SET)]))

    alter(a, ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", None,
                    incremental_operation=AlterConfigOpType.DELETE)]))
    entry = wait_for(a, res, "consumer.session.timeout.ms",
                     lambda e: e and e.source == ConfigSource.DEFAULT_CONFIG.value)
    assert entry.value == default.value
