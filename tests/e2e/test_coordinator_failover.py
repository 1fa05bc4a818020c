"""Coordinators follow their partitions' leadership, on clusters of real `strom serve` nodes.

A consumer group's coordinator is the leader of the group's partition of
`__consumer_offsets` (three replicas on a three-node cluster). When that broker dies, the
controller makes an in-sync replica the partition's leader; that broker loads the
partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile) and coordinates the group from then on,
with every offset committed before the failover; the clients find it through
FindCoordinator. A broker that does not lead the group's partition answers the group's
requests with NOT_COORDINATOR.

Deadlines only keep a broken cluster from hanging the suite; they are never assertions
about speed.
"""

from __future__ import annotations

import socket
import time

from cluster import Cluster, cluster_factory
from conftest import ck_admin, ck_consumer, ck_produce, ck_producer, wait_until
from test_replication import create_replicated_topic, wait_for_isr

# The fixture is imported so that pytest finds it; listed here so that pyflakes counts it used.
__all__ = ["cluster_factory"]

NOT_COORDINATOR = 16
# Three partitions of __consumer_offsets keep the loads small; a follower that has not
# caught up for 2 s leaves the ISR.
SETTINGS = {"offsets.topic.num.partitions": "3", "replica.lag.time.max.ms": "2000"}


def coordinator_of(cluster: Cluster, group: str) -> int:
    """The group's coordinator, as FindCoordinator (through the admin client) names it."""
    admin = ck_admin(cluster.bootstrap)  # kept alive until the future resolves
    found = admin.describe_consumer_groups([group], request_timeout=15)[group].result(30)
    return found.coordinator.id


def offset_fetch_error(node, group: str, topic: str) -> int:
    """The top-level error of an OffsetFetch (v3, kafka-python's codec) sent straight to
    `node`, not through FindCoordinator."""
    from kafka.conn import BrokerConnection
    from kafka.protocol.commit import OffsetFetchRequest

    host, port = node.bootstrap.rsplit(":", 1)
    conn = BrokerConnection(host, int(port), socket.AF_INET, api_version=(2, 0))
    try:
        assert conn.connect_blocking(10), f"could not connect to {node.bootstrap}"
        future = conn.send(OffsetFetchRequest[3](group, [(topic, [0])]))
        deadline = time.monotonic() + 15
        while not future.is_done and time.monotonic() < deadline:
            for response, f in conn.recv():
                f.success(response)
            time.sleep(0.01)
        assert future.succeeded(), f"OffsetFetch to {node.bootstrap} failed: {future.exception}"
        return future.value.error_code
    finally:
        conn.close()


def consume_and_commit(consumer, values: set, until: int, what: str, timeout: float = 90):
    """Polls, adding each value to `values`, and commits synchronously after every poll
    that returned records, until `values` holds `until` values; returns how many records
    were delivered (duplicates included)."""
    delivered = 0
    deadline = time.monotonic() + timeout
    while len(values) < until:
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {len(values)} of {until} values seen"
        records = consumer.consume(num_messages=100, timeout=0.5)
        good = [r for r in records if r.error() is None]
        for r in good:
            values.add(r.value())
        delivered += len(good)
        if good:
            consumer.commit(asynchronous=False)
    return delivered


def test_a_group_whose_coordinator_is_killed_finds_the_new_one_and_resumes_from_its_committed_offsets(cluster_factory):
    """A consumer group commits as it reads a three-partition topic. Its coordinator's
    broker is killed -9 halfway: the controller elects another replica of the group's
    __consumer_offsets partition, which loads it, and the consumer (librdkafka) goes on
    through the new coordinator, its commits answered. Every offset committed before the
    kill is what the new coordinator returns; a new member of the group, after more
    records arrive, reads exactly those records and nothing it already committed. Back
    again, the killed broker, no longer the partition's leader, answers the group's
    OffsetFetch with NOT_COORDINATOR."""
    cluster = cluster_factory(3, settings=SETTINGS)
    topic, group, partitions = "orders", "billing", 3
    create_replicated_topic(cluster, topic, partitions=partitions, config={"min.insync.replicas": "2"})
    wait_for_isr(cluster, topic)
    producer = ck_producer(cluster.bootstrap, acks="all")
    ck_produce(cluster.bootstrap, topic, [{"value": b"v%05d" % i, "partition": i % partitions} for i in range(600)], producer=producer)

    consumer = ck_consumer(
        cluster.bootstrap,
        **{
            "group.id": group,
            "enable.auto.commit": False,
            # commit() commits the offsets of the records consume() returned.
            "enable.auto.offset.store": True,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
        },
    )
    consumer.subscribe([topic])
    values: set = set()
    try:
        consume_and_commit(consumer, values, 300, "300 records before the coordinator is killed")
        from confluent_kafka import TopicPartition

        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        # A partition with nothing committed yet reports a negative offset.
        before = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(assigned, timeout=15)}
        assert sum(before.values()) >= 300, f"committed offsets {before} cover fewer than the 300 records read"

        victim = coordinator_of(cluster, group)
        print(f"group {group!r} is coordinated by node {victim}; killing it")
        cluster[victim].kill9()
        survivor = next(n for n in cluster.running())
        wait_until(
            lambda: coordinator_of(cluster, group) not in (victim, -1),
            60,
            f"a coordinator of {group!r} other than the killed node {victim}",
        )
        new = coordinator_of(cluster, group)
        print(f"node {new} coordinates {group!r} now")
        after_failover = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(assigned, timeout=30)}
        for p, offset in before.items():
            assert after_failover[p] >= offset, (
                f"the new coordinator {new} returns offset {after_failover[p]} for {topic}-{p}, "
                f"below the {offset} committed before node {victim} was killed"
            )

        consume_and_commit(consumer, values, 600, "the other 300 records through the new coordinator")
        committed = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(assigned, timeout=15)}
        assert sum(committed.values()) == 600, f"after reading everything, the committed offsets are {committed}"
    finally:
        consumer.close()

    # A new member resumes from the committed offsets: it reads the new records only.
    ck_produce(
        survivor.bootstrap,
        topic,
        [{"value": b"w%05d" % i, "partition": i % partitions} for i in range(90)],
        producer=ck_producer(survivor.bootstrap, acks="all"),
    )
    second = ck_consumer(cluster.bootstrap, **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    second.subscribe([topic])
    fresh: list = []
    try:
        deadline = time.monotonic() + 60
        while len(fresh) < 90 and time.monotonic() < deadline:
            fresh += [r.value() for r in second.consume(num_messages=100, timeout=0.5) if r.error() is None]
        time.sleep(1)
        fresh += [r.value() for r in second.consume(num_messages=100, timeout=0.5) if r.error() is None]
    finally:
        second.close()
    assert sorted(fresh) == sorted(b"w%05d" % i for i in range(90)), (
        f"a new member read {len(fresh)} records, {sum(1 for v in fresh if v.startswith(b'v'))} of them already committed"
    )

    cluster[victim].start()
    cluster.wait_for_brokers(3)
    wait_for_isr(cluster, "__consumer_offsets", timeout=60)
    coordinator = coordinator_of(cluster, group)
    for node in cluster.running():
        if node.node_id != coordinator:
            assert offset_fetch_error(node, group, topic) == NOT_COORDINATOR, (
                f"node {node.node_id} answers {group!r}'s OffsetFetch, but node {coordinator} coordinates it"
            )
    assert offset_fetch_error(cluster[coordinator], group, topic) == 0
