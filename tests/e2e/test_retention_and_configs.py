"""Retention, config changes and the admin APIs around them, driven by real admin clients.

Each test says what a Kafka user would expect and checks it against a real broker:
configs changed at run time take effect at once and survive a restart, bad values are
refused with INVALID_CONFIG, retention moves the earliest offset forward, and
CreatePartitions / DeleteRecords / DescribeLogDirs behave as in Kafka.
"""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourceType,
)

from conftest import (
    ck_admin,
    ck_consume,
    ck_consumer,
    ck_produce,
    ck_producer,
    create_topic,
    wait_for_topic,
    wait_until,
    watermarks,
)


def topic_configs(bootstrap, topic):
    admin = ck_admin(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def incremental_alter(bootstrap, resource_type, name, **changes):
    admin = ck_admin(bootstrap)
    entries = [
        ConfigEntry(key.replace("_", "."), value, incremental_operation=AlterConfigOpType.SET)
        for key, value in changes.items()
    ]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    return admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def test_topic_config_change_takes_effect_at_once_and_survives_restart(broker):
    """max.message.bytes lowered through IncrementalAlterConfigs refuses a large batch
    immediately, without a restart; after a restart the override is still there."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "limits", 1)
    ck_produce(bootstrap, "limits", [{"value": b"x" * 5000}])

    incremental_alter(bootstrap, ResourceType.TOPIC, "limits", max_message_bytes="2000")
    entry = topic_configs(bootstrap, "limits")["max.message.bytes"]
    assert entry.value == "2000"
    assert entry.source == 1  # DYNAMIC_TOPIC_CONFIG

    with pytest.raises(AssertionError, match="MSG_SIZE_TOO_LARGE|too large"):
        ck_produce(bootstrap, "limits", [{"value": b"x" * 5000}], **{"message.send.max.retries": 0})

    broker.restart()
    bootstrap = broker.bootstrap
    entry = topic_configs(bootstrap, "limits")["max.message.bytes"]
    assert entry.value == "2000", "the override survived the restart"
    ck_produce(bootstrap, "limits", [{"value": b"small"}])


def test_bad_config_values_are_refused_with_invalid_config(broker):
    """Unknown names, wrong types and out-of-range values are INVALID_CONFIG, and the
    topic keeps its previous configs."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "strict", 1, config={"retention.ms": "100000"})
    for key, value in [("retention.ms", "soon"), ("cleanup.policy", "shred"), ("no.such.config", "1"),
                       ("min.insync.replicas", "0")]:
        with pytest.raises(KafkaException) as raised:
            incremental_alter(bootstrap, ResourceType.TOPIC, "strict", **{key.replace(".", "_"): value})
        assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG, (key, value, raised.value)
    assert topic_configs(bootstrap, "strict")["retention.ms"].value == "100000"


def test_kafka_python_admin_alters_and_describes_configs(broker):
    """The independent client's admin API sees the same configs (legacy AlterConfigs)."""
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType, KafkaAdminClient

    bootstrap = broker.bootstrap
    create_topic(bootstrap, "kp-configs", 1)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([KpResource(ConfigResourceType.TOPIC, "kp-configs", configs={"retention.ms": "123456"})])
        described = admin.describe_configs([KpResource(ConfigResourceType.TOPIC, "kp-configs")])
        text = repr(described)
        assert "retention.ms" in text and "123456" in text
    finally:
        admin.close()
    assert topic_configs(bootstrap, "kp-configs")["retention.ms"].value == "123456"


def test_dynamic_broker_default_applies_to_topics_without_override(broker):
    """log.retention.ms set on the broker at run time becomes the default of every topic
    that has no override of its own, and is reported as a dynamic broker config."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "inherits", 1)
    incremental_alter(bootstrap, ResourceType.BROKER, "1", log_retention_ms="4242000")
    entry = topic_configs(bootstrap, "inherits")["retention.ms"]
    assert entry.value == "4242000"
    assert entry.source == 2  # DYNAMIC_BROKER_CONFIG
    broker.restart()
    assert topic_configs(broker.bootstrap, "inherits")["retention.ms"].value == "4242000"
    # A read-only broker config cannot change at run time.
    with pytest.raises(KafkaException):
        incremental_alter(broker.bootstrap, ResourceType.BROKER, "1", num_partitions="3")


def test_size_retention_deletes_old_segments_and_moves_the_earliest_offset(broker_factory):
    """With small segments and retention.bytes, old segments go: the earliest offset that
    clients see moves forward, while the latest records stay readable."""
    broker = broker_factory({"log.retention.check.interval.ms": "200"})
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "bounded", 1, config={"segment.bytes": "4096", "retention.bytes": "8192"})
    # One flush per ten records, so that the data arrives as many batches.
    producer = ck_producer(bootstrap, **{"linger.ms": 0})
    for _ in range(20):
        ck_produce(bootstrap, "bounded", [{"value": b"v" * 500} for _ in range(10)], producer=producer)
    # Retention may already run while the records arrive: wait until the earliest
    # offset has moved and then stayed put for several retention passes.
    seen = []

    def settled():
        seen.append(watermarks(bootstrap, "bounded", [0])[0])
        recent = seen[-6:]
        return recent[-1] if len(recent) == 6 and recent[-1][0] > 0 and len(set(recent)) == 1 else None

    low, high = wait_until(settled, timeout=30, what="retention to advance the earliest offset", interval=0.2)
    assert high == 200
    assert 0 < low < 200
    tail = ck_consume(bootstrap, "bounded", [0], expected=high - low)
    assert [r.offset for r in tail] == list(range(low, high))


def test_time_retention_and_a_consumer_before_the_start(broker_factory):
    """Records whose timestamps are older than retention.ms go with their segment; a
    consumer asking for an offset before the new start gets OFFSET_OUT_OF_RANGE when it
    asked for errors, and resets to the earliest offset when it asked for that."""
    broker = broker_factory({"log.retention.check.interval.ms": "200"})
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "aging", 1, config={"segment.bytes": "2048", "retention.ms": "60000"})
    old = int(time.time() * 1000) - 3_600_000
    producer = ck_producer(bootstrap, **{"linger.ms": 0})
    for _ in range(10):
        ck_produce(bootstrap, "aging", [{"value": b"o" * 300, "timestamp": old} for _ in range(3)], producer=producer)
    now = int(time.time() * 1000)
    for _ in range(5):
        ck_produce(bootstrap, "aging", [{"value": b"n" * 300, "timestamp": now} for _ in range(2)], producer=producer)
    low, high = wait_until(
        lambda: (lambda w: w if w[0] >= 25 else None)(watermarks(bootstrap, "aging", [0])[0]),
        timeout=30,
        what="time retention to delete the old segments",
    )
    assert high == 40 and low <= 30, "only expired data went"

    strict = ck_consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        strict.assign([TopicPartition("aging", 0, 0)])
        error = wait_until(
            lambda: next((m.error() for m in strict.consume(10, timeout=0.5) if m.error()), None),
            timeout=30,
            what="an offset-out-of-range error",
        )
        assert error.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET), error
    finally:
        strict.close()
    records = ck_consume(bootstrap, "aging", [0], expected=high - low, start_offset=0)
    assert records[0].offset == low, "the consumer reset to the earliest offset"


def test_create_partitions_and_delete_records(broker):
    """CreatePartitions grows a topic (new partitions usable at once and kept across a
    restart); DeleteRecords moves the log start offset and clients see it."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "growing", 2)
    admin = ck_admin(bootstrap)
    admin.create_partitions([NewPartitions("growing", 5)])["growing"].result(timeout=30)
    wait_for_topic(bootstrap, "growing", partitions=5)
    ck_produce(bootstrap, "growing", [{"value": str(i).encode(), "partition": 4} for i in range(10)])
    with pytest.raises(KafkaException) as raised:
        admin.create_partitions([NewPartitions("growing", 3)])["growing"].result(timeout=30)
    assert raised.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    deleted = admin.delete_records([TopicPartition("growing", 4, 6)])
    result = list(deleted.values())[0].result(timeout=30)
    assert result.low_watermark == 6, "the new low watermark"
    assert watermarks(bootstrap, "growing", [4])[4] == (6, 10)

    broker.restart()
    bootstrap = broker.bootstrap
    wait_for_topic(bootstrap, "growing", partitions=5)
    assert watermarks(bootstrap, "growing", [4])[4] == (6, 10), "the log start offset is persisted"
    rest = ck_consume(bootstrap, "growing", [4], expected=4)
    assert [r.value for r in rest] == [b"6", b"7", b"8", b"9"]


def test_describe_log_dirs_reports_partition_sizes(broker):
    """DescribeLogDirs (kafka-python's admin) names the data directory and the size of
    every partition, which grows with what was written."""
    from kafka.admin import KafkaAdminClient

    bootstrap = broker.bootstrap
    create_topic(bootstrap, "sized", 2)
    ck_produce(bootstrap, "sized", [{"value": b"z" * 1000, "partition": 0} for _ in range(20)])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        response = admin.describe_log_dirs()
    finally:
        admin.close()
    text = repr(response)
    assert str(broker.data_dir) in text
    assert "sized" in text


def test_kafka_broker_configs_strom_does_not_use_are_kept(broker):
    """Every broker config Kafka knows is accepted (type-checked) and persisted, and reported
    by DescribeConfigs, even those with no effect in Strom (here a SASL one a Kafka client's
    own tests set, and a password, which is never shown); names Kafka does not know and values
    of the wrong type are still INVALID_CONFIG."""
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    admin = ck_admin(broker.bootstrap)
    incremental_alter(broker.bootstrap, ResourceType.BROKER, "1",
                      **{"sasl.kerberos.min.time.before.relogin": "60000", "num.io.threads": "16"})
    for key, value in (("sasl.kerberos.min.time.before.relogin", "soon"), ("no.such.broker.config", "1"),
                       ("num.io.threads", "99999999999")):
        with pytest.raises(KafkaException) as raised:
            incremental_alter(broker.bootstrap, ResourceType.BROKER, "1", **{key: value})
        assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG, (key, value, raised.value)

    # AlterConfigs (kafka-python) replaces the broker's dynamic configs with its set.
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        result = kp.alter_configs([KpConfigResource(ConfigResourceType.BROKER, "1", configs={
            "sasl.kerberos.min.time.before.relogin": "90000", "num.io.threads": "16",
            "ssl.key.password": "secret"})])
        assert [r[0] for r in result.resources] == [0], result
    finally:
        kp.close()
    broker.restart()
    admin = ck_admin(broker.bootstrap)
    resource = ConfigResource(ResourceType.BROKER, "1")
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    relogin = described["sasl.kerberos.min.time.before.relogin"]
    assert (relogin.value, relogin.source, relogin.is_read_only) == ("90000", 2, False), relogin
    assert described["num.io.threads"].value == "16"
    password = described["ssl.key.password"]
    assert (password.value, password.is_sensitive) == (None, True), password
