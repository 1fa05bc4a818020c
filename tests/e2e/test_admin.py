"""Admin and metadata APIs: CreateTopics, DeleteTopics, auto-creation, ListOffsets,
DescribeConfigs, size limits and Fetch long-polling, driven by real clients."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from conftest import (
    ck_admin,
    ck_consumer,
    ck_produce,
    ck_producer,
    create_topic,
    kp_consumer,
    topic_metadata,
    wait_for_topic,
    wait_until,
    watermarks,
)


def create_error(bootstrap: str, name: str, partitions: int = 1, rf: int = 1, config=None, validate_only=False):
    """Create one topic; return the Kafka error code (None on success)."""
    from confluent_kafka.admin import NewTopic

    admin = ck_admin(bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    fut = admin.create_topics(
        [NewTopic(name, partitions, rf, config=config or {})], operation_timeout=30, request_timeout=30, validate_only=validate_only
    )[name]
    try:
        fut.result(60)
        return None
    except KafkaException as e:
        return e.args[0].code()


# --------------------------------------------------------------------------------------
# CreateTopics / DeleteTopics
# --------------------------------------------------------------------------------------


def test_create_topics_validate_only_creates_nothing(broker):
    """validate_only checks a request without acting on it: no topic in metadata, no directory;
    it still reports errors (invalid name, existing topic) as a real create would."""
    assert create_error(broker.bootstrap, "vo-topic", 4, config={"retention.ms": "60000"}, validate_only=True) is None
    assert "vo-topic" not in topic_metadata(broker.bootstrap).topics
    assert not list(broker.data_dir.glob("vo-topic-*")), "validate_only created partition directories"

    assert create_error(broker.bootstrap, "bad/name", validate_only=True) == KafkaError.TOPIC_EXCEPTION
    assert create_error(broker.bootstrap, "vo-topic", config={"no.such.config": "1"}, validate_only=True) == KafkaError.INVALID_CONFIG

    create_topic(broker.bootstrap, "vo-real", 2)
    assert create_error(broker.bootstrap, "vo-real", 2, validate_only=True) == KafkaError.TOPIC_ALREADY_EXISTS
    # a real create after the dry run works, with the partitions asked for
    create_topic(broker.bootstrap, "vo-topic", 4)
    assert len(topic_metadata(broker.bootstrap).topics["vo-topic"].partitions) == 4


@pytest.mark.parametrize(
    "name,partitions,rf,config,expected",
    [
        ("bad/name", 1, 1, None, KafkaError.TOPIC_EXCEPTION),
        ("..", 1, 1, None, KafkaError.TOPIC_EXCEPTION),
        (".", 1, 1, None, KafkaError.TOPIC_EXCEPTION),
        ("a" * 250, 1, 1, None, KafkaError.TOPIC_EXCEPTION),
        ("spaces are bad", 1, 1, None, KafkaError.TOPIC_EXCEPTION),
        ("rf-three", 1, 3, None, KafkaError.INVALID_REPLICATION_FACTOR),
        ("unknown-config", 1, 1, {"no.such.config": "1"}, KafkaError.INVALID_CONFIG),
        ("bad-retention", 1, 1, {"retention.ms": "soon"}, KafkaError.INVALID_CONFIG),
        ("bad-ts-type", 1, 1, {"message.timestamp.type": "WallClock"}, KafkaError.INVALID_CONFIG),
        ("bad-cleanup", 1, 1, {"cleanup.policy": "shred"}, KafkaError.INVALID_CONFIG),
        ("bad-codec", 1, 1, {"compression.type": "brotli"}, KafkaError.INVALID_CONFIG),
    ],
    ids=["slash", "dotdot", "dot", "250-chars", "spaces", "rf3", "unknown-config", "bad-retention", "bad-ts-type", "bad-cleanup",
         "bad-codec"],
)
def test_create_topics_rejects_invalid_requests(broker, name, partitions, rf, config, expected):
    """Each invalid CreateTopics gets its Kafka error code and leaves no topic behind."""
    before = partition_dirs(broker)
    code = create_error(broker.bootstrap, name, partitions, rf, config)
    assert code == expected, f"CreateTopics {name!r} rf={rf} config={config}: got error {code}, expected {expected}"
    assert name not in topic_metadata(broker.bootstrap).topics
    assert partition_dirs(broker) == before, "a rejected CreateTopics left a partition directory"


def partition_dirs(broker) -> set[str]:
    return {p.name for p in broker.data_dir.rglob("*-[0-9]*") if p.is_dir()}


def test_create_topic_name_limits_and_duplicates(broker):
    """249 characters is the longest legal name; creating an existing topic gives TOPIC_ALREADY_EXISTS."""
    longest = "L" * 249
    assert create_error(broker.bootstrap, longest, 2) is None
    wait_for_topic(broker.bootstrap, longest, 2)
    assert ck_produce(broker.bootstrap, longest, [{"value": b"fits", "partition": 1}])[0].offset == 0
    assert create_error(broker.bootstrap, longest, 2) == KafkaError.TOPIC_ALREADY_EXISTS
    assert create_error(broker.bootstrap, "Mixed.Case_and-dash.9", 1) is None


def test_delete_topics(broker):
    """DeleteTopics removes the topic from metadata and its partition directories from disk;
    deleting an unknown topic is UNKNOWN_TOPIC_OR_PART; the name can be reused from offset 0."""
    create_topic(broker.bootstrap, "gone", 3)
    ck_produce(broker.bootstrap, "gone", [{"value": b"v%d" % i, "partition": i % 3} for i in range(30)])
    assert sorted(p.name for p in broker.data_dir.glob("gone-*")) == ["gone-0", "gone-1", "gone-2"]

    admin = ck_admin(broker.bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    admin.delete_topics(["gone"], operation_timeout=30)["gone"].result(60)
    wait_until(lambda: "gone" not in topic_metadata(broker.bootstrap).topics, 30, "deleted topic to leave metadata")
    wait_until(lambda: not list(broker.data_dir.glob("gone-*")), 30, "deleted topic's directories to be removed")

    admin = ck_admin(broker.bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    fut = admin.delete_topics(["never-existed"], operation_timeout=30)["never-existed"]
    with pytest.raises(KafkaException) as ei:
        fut.result(60)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    create_topic(broker.bootstrap, "gone", 1)
    assert watermarks(broker.bootstrap, "gone", [0]) == {0: (0, 0)}, "re-created topic kept old data"
    assert ck_produce(broker.bootstrap, "gone", [{"value": b"fresh"}])[0].offset == 0


# --------------------------------------------------------------------------------------
# Auto topic creation
# --------------------------------------------------------------------------------------


def test_auto_create_uses_num_partitions(broker_factory):
    """With --set num.partitions=3, producing to an unknown topic (librdkafka and kafka-python)
    creates it with 3 partitions."""
    broker = broker_factory({"num.partitions": 3})
    delivered = ck_produce(broker.bootstrap, "auto-ck", [{"value": b"hello"}])
    assert delivered[0].offset == 0
    t = wait_for_topic(broker.bootstrap, "auto-ck", 3)
    assert len(t.partitions) == 3

    from conftest import kp_produce

    kp_produce(broker.bootstrap, "auto-kp", [{"value": b"hello"}])
    wait_for_topic(broker.bootstrap, "auto-kp", 3)


def test_auto_create_disabled(broker_factory):
    """With --set auto.create.topics.enable=false, producing to an unknown topic fails and
    creates nothing; explicit CreateTopics still works."""
    broker = broker_factory({"auto.create.topics.enable": "false"})
    errors = []
    p = ck_producer(broker.bootstrap, **{"message.timeout.ms": 5000})
    p.produce("not-auto", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(60) == 0
    assert len(errors) == 1 and errors[0] is not None, f"produce to a missing topic was delivered: {errors}"
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT), errors[0]

    # a consumer's metadata request does not create it either
    c = kp_consumer(broker.bootstrap)
    try:
        assert c.partitions_for_topic("not-auto") in (None, set())
    finally:
        c.close()
    assert "not-auto" not in topic_metadata(broker.bootstrap).topics
    assert not list(broker.data_dir.glob("not-auto-*"))

    create_topic(broker.bootstrap, "explicit", 2)
    assert ck_produce(broker.bootstrap, "explicit", [{"value": b"ok", "partition": 1}])[0].offset == 0


# --------------------------------------------------------------------------------------
# ListOffsets
# --------------------------------------------------------------------------------------

T0 = 1_650_000_000_000


def list_offsets_fixture(broker):
    """150 records in three batches (none, gzip, zstd). Timestamps rise by 10 ms, except
    offset 10 (T0+700, so 'first offset with timestamp >= target' is not the same as
    'first offset after the last smaller timestamp') and offset 120 (T0+9000, the maximum,
    inside a compressed batch)."""
    create_topic(broker.bootstrap, "lo", 1, config={"retention.ms": "-1"})  # fixed old timestamps
    timestamps = [T0 + 10 * i for i in range(150)]
    timestamps[10] = T0 + 700
    timestamps[120] = T0 + 9000
    for b, codec in enumerate(["none", "gzip", "zstd"]):
        recs = [{"value": b"r%d" % i, "timestamp": timestamps[i], "partition": 0} for i in range(b * 50, b * 50 + 50)]
        delivered = ck_produce(broker.bootstrap, "lo", recs, **{"compression.type": codec, "linger.ms": 50})
        assert [d.offset for d in delivered] == list(range(b * 50, b * 50 + 50))
    return timestamps


def first_offset_at_or_after(timestamps, target):
    return next((o for o, ts in enumerate(timestamps) if ts >= target), None)


def lookup_targets(timestamps):
    t = [T0 - 1000, T0, T0 + 5, T0 + 95, T0 + 105, T0 + 490, T0 + 495, T0 + 500, T0 + 700, T0 + 701, T0 + 745,
         T0 + 999, T0 + 1000, T0 + 1195, T0 + 1205, T0 + 1490, T0 + 1495, T0 + 9000, T0 + 9001]
    # sanity of the fixture itself: the out-of-order timestamps change some answers
    assert first_offset_at_or_after(timestamps, T0 + 105) == 10
    assert first_offset_at_or_after(timestamps, T0 + 745) == 75
    assert first_offset_at_or_after(timestamps, T0 + 1495) == 120
    assert first_offset_at_or_after(timestamps, T0 + 9001) is None
    return t


def test_list_offsets_confluent(broker):
    """librdkafka offsets_for_times returns the first offset whose timestamp >= target (also
    inside compressed batches), -1 past the end; watermarks are (0, 150); AdminClient.list_offsets
    answers earliest, latest, max-timestamp and by-timestamp."""
    from confluent_kafka.admin import OffsetSpec

    timestamps = list_offsets_fixture(broker)
    c = ck_consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition("lo", 0), timeout=10, cached=False) == (0, 150)
        for target in lookup_targets(timestamps):
            [res] = c.offsets_for_times([TopicPartition("lo", 0, target)], timeout=10)
            assert res.error is None, res.error
            want = first_offset_at_or_after(timestamps, target)
            assert res.offset == (-1 if want is None else want), f"offsets_for_times({target - T0:+d}ms): {res.offset}, expected {want}"
    finally:
        c.close()

    admin = ck_admin(broker.bootstrap)
    tp = TopicPartition("lo", 0)

    def list_one(spec):
        return admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(30)

    assert list_one(OffsetSpec.earliest()).offset == 0
    assert list_one(OffsetSpec.latest()).offset == 150
    mx = list_one(OffsetSpec.max_timestamp())
    assert (mx.offset, mx.timestamp) == (120, T0 + 9000), f"max timestamp: offset {mx.offset} ts {mx.timestamp}"
    for target in (T0 + 745, T0 + 1250, T0 + 3000):
        r = list_one(OffsetSpec.for_timestamp(target))
        want = first_offset_at_or_after(timestamps, target)
        assert r.offset == want and r.timestamp == timestamps[want], f"for_timestamp({target - T0:+d}ms) = ({r.offset}, {r.timestamp})"


def test_list_offsets_kafka_python(broker):
    """kafka-python offsets_for_times gives offset and timestamp of the first record with
    timestamp >= target (None past the end); beginning_offsets 0 and end_offsets 150."""
    from kafka import TopicPartition as KTP

    timestamps = list_offsets_fixture(broker)
    c = kp_consumer(broker.bootstrap)
    try:
        tp = KTP("lo", 0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 150}
        for target in lookup_targets(timestamps):
            got = c.offsets_for_times({tp: target})[tp]
            want = first_offset_at_or_after(timestamps, target)
            if want is None:
                assert got is None, f"offsets_for_times({target - T0:+d}ms) past the end returned {got}"
            else:
                assert got is not None, f"offsets_for_times({target - T0:+d}ms) returned None, expected {want}"
                assert (got.offset, got.timestamp) == (want, timestamps[want]), f"offsets_for_times({target - T0:+d}ms) = {got}, expected offset {want}"
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------------------


def produce_errors(bootstrap, topic, values, **conf):
    p = ck_producer(bootstrap, **conf)
    results = []
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=lambda err, msg: results.append((err, msg.offset())))
        assert p.flush(60) == 0
    return results


def test_max_message_bytes_enforced(broker_factory):
    """A batch larger than the topic's max.message.bytes is rejected with MESSAGE_TOO_LARGE
    (librdkafka and kafka-python) and nothing is written; smaller records still go in. The
    broker-wide message.max.bytes is the default for topics without an override."""
    broker = broker_factory({"message.max.bytes": 8000})
    create_topic(broker.bootstrap, "small", 1, config={"max.message.bytes": "10000"})
    create_topic(broker.bootstrap, "inherits", 1)
    rnd = random.Random(5)

    res = produce_errors(broker.bootstrap, "small", [rnd.randbytes(20000), rnd.randbytes(5000)], **{"compression.type": "none"})
    assert res[0][0] is not None and res[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, f"20000-byte record: {res[0]}"
    assert res[1][0] is None and res[1][1] == 0, f"5000-byte record after the rejected one: {res[1]}"

    res = produce_errors(broker.bootstrap, "inherits", [rnd.randbytes(12000), rnd.randbytes(4000)], **{"compression.type": "none"})
    assert res[0][0] is not None and res[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, f"12000-byte record: {res[0]}"
    assert res[1][0] is None and res[1][1] == 0, f"4000-byte record: {res[1]}"

    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, retries=0)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            kp.send("small", value=rnd.randbytes(20000), partition=0).get(timeout=60)
    finally:
        kp.close(timeout=10)

    assert watermarks(broker.bootstrap, "small", [0]) == {0: (0, 1)}
    assert watermarks(broker.bootstrap, "inherits", [0]) == {0: (0, 1)}


# --------------------------------------------------------------------------------------
# DescribeConfigs / DescribeCluster
# --------------------------------------------------------------------------------------


def test_describe_broker_configs(broker_factory):
    """DescribeConfigs for BROKER '1' lists the broker's configs, with the values given by --set."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    broker = broker_factory({"num.partitions": 4, "log.segment.bytes": 2097152})
    res = ConfigResource(ResourceType.BROKER, "1")
    admin = ck_admin(broker.bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    configs = admin.describe_configs([res], request_timeout=30)[res].result(30)
    assert configs, "no broker configs returned"
    assert configs["num.partitions"].value == "4"
    assert configs["log.segment.bytes"].value == "2097152"
    assert configs["auto.create.topics.enable"].value == "true"

    admin = ck_admin(broker.bootstrap)
    cluster = admin.describe_cluster(request_timeout=30).result(30)
    assert [n.id for n in cluster.nodes] == [1]
    assert f"{cluster.nodes[0].host}:{cluster.nodes[0].port}" == broker.bootstrap
    assert cluster.controller is not None and cluster.controller.id == 1
    assert cluster.cluster_id, "empty cluster id"


def test_describe_topic_config_defaults(broker):
    """A topic's DescribeConfigs includes Kafka's defaults for configs not overridden."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    create_topic(broker.bootstrap, "defaults", 1, config={"retention.ms": "123456"})
    res = ConfigResource(ResourceType.TOPIC, "defaults")
    admin = ck_admin(broker.bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    configs = admin.describe_configs([res], request_timeout=30)[res].result(30)
    assert configs["retention.ms"].value == "123456"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["message.timestamp.type"].value == "CreateTime"
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["min.insync.replicas"].value == "1"


# --------------------------------------------------------------------------------------
# Fetch long-poll
# --------------------------------------------------------------------------------------


def test_fetch_long_poll_wakes_on_new_data(broker):
    """A consumer whose Fetch is parked at the broker (fetch.wait.max.ms=5000, nothing to read)
    gets a record produced meanwhile long before the 5 s wait expires: the broker answers a
    waiting fetch when data arrives instead of sleeping out the wait."""
    from confluent_kafka import OFFSET_BEGINNING

    max_wait_ms = 5000
    create_topic(broker.bootstrap, "lp", 1)
    producer = ck_producer(broker.bootstrap, **{"linger.ms": 0})
    ck_produce(broker.bootstrap, "lp", [{"value": b"warm-up"}], producer=producer)

    stats = {}
    lock = threading.Lock()

    def on_stats(js):
        with lock:
            stats["last"] = json.loads(js)

    c = ck_consumer(broker.bootstrap, **{"fetch.wait.max.ms": max_wait_ms, "fetch.min.bytes": 1, "statistics.interval.ms": 100, "stats_cb": on_stats})
    try:
        c.assign([TopicPartition("lp", 0, OFFSET_BEGINNING)])
        first = wait_until(lambda: c.poll(0.2), 30, "the warm-up record")
        assert first.error() is None and first.value() == b"warm-up"

        def fetch_parked():
            # poll() serves the stats callback; nothing else may arrive meanwhile
            m = c.poll(0.05)
            assert m is None, f"unexpected message {m.value() if m.error() is None else m.error()}"
            with lock:
                s = stats.get("last")
            if not s:
                return False
            b = [b for b in s["brokers"].values() if b.get("nodeid") == 1]
            part = s.get("topics", {}).get("lp", {}).get("partitions", {}).get("0", {})
            return (
                b
                and b[0]["req"].get("Fetch", 0) >= 2
                and b[0].get("waitresp_cnt", 0) >= 1
                and part.get("fetch_state") == "active"
                and part.get("next_offset", part.get("fetch_offset", 0)) >= 1
            )

        wait_until(fetch_parked, 30, "a Fetch request waiting at the broker")

        sent = time.monotonic()
        producer.produce("lp", value=b"wake-up")
        assert producer.flush(30) == 0
        acked = time.monotonic()
        msg = wait_until(lambda: c.poll(0.01), 30, "the record produced during the long poll")
        received = time.monotonic()
        assert msg.error() is None and msg.value() == b"wake-up"
        waited_ms = (received - sent) * 1000
        print(f"produce ack after {(acked - sent) * 1000:.1f} ms, received after {waited_ms:.1f} ms")
        assert waited_ms < max_wait_ms / 2, (
            f"record arrived {waited_ms:.0f} ms after it was produced, with fetch.wait.max.ms={max_wait_ms}: "
            "the parked fetch was not woken by the new data"
        )
    finally:
        c.close()


def test_elect_leaders_on_one_node_needs_no_election(broker):
    """A one-broker cluster's partitions already have their preferred leader: both
    clients' leader elections report ELECTION_NOT_NEEDED, and a missing partition
    UNKNOWN_TOPIC_OR_PARTITION, as a one-broker Kafka answers."""
    from confluent_kafka import ElectionType, KafkaError, TopicPartition
    from kafka.admin import KafkaAdminClient

    bootstrap = broker.bootstrap
    create_topic(bootstrap, "elected", 2)
    ck = ck_admin(bootstrap)
    results = ck.elect_leaders(
        ElectionType.PREFERRED, [TopicPartition("elected", 0), TopicPartition("elected", 5)]
    ).result(timeout=30)
    codes = {(tp.topic, tp.partition): error.code() for tp, error in results.items()}
    assert codes == {("elected", 0): KafkaError.ELECTION_NOT_NEEDED,
                     ("elected", 5): KafkaError.UNKNOWN_TOPIC_OR_PART}, codes

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        response = admin.perform_leader_election(0, {"elected": [1]})
        results = [(topic, [(p[0], p[1]) for p in partitions])
                   for topic, partitions in response.replication_election_results]
        assert results == [("elected", [(1, 84)])], response
    finally:
        admin.close()


def test_authorized_operations_without_an_authorizer_are_all_allowed(broker_factory):
    """KIP-430: asked for, a broker without an authorizer reports every operation Kafka
    supports on a topic, the cluster and a group (classic and consumer protocol) as allowed."""
    from confluent_kafka import Consumer, TopicCollection
    from confluent_kafka.admin import AclOperation

    broker = broker_factory({"group.initial.rebalance.delay.ms": "0"})
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "guarded", 1)
    admin = ck_admin(bootstrap)
    topic = admin.describe_topics(TopicCollection(["guarded"]), include_authorized_operations=True)["guarded"]
    assert set(topic.result(timeout=30).authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
        AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}
    for protocol in ("classic", "consumer"):
        group = f"guarded-{protocol}"
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol})
        try:
            consumer.subscribe(["guarded"])

            def assigned():
                consumer.poll(0.1)
                return consumer.assignment()

            wait_until(assigned, 30, f"the {protocol} member's assignment")
            described = admin.describe_consumer_groups([group], include_authorized_operations=True)[group]
            assert set(described.result(timeout=30).authorized_operations) == {
                AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.DESCRIBE_CONFIGS,
                AclOperation.ALTER_CONFIGS}, protocol
        finally:
            consumer.close()
