"""Coordinators follow their partitions' leadership, on clusters of real `strom serve` nodes.

A consumer group's coordinator is the leader of the group's partition of
`__consumer_offsets` (three replicas on a three-node cluster). When that broker dies, the
controller makes an in-sync replica the partition's leader; that broker loads the
partition (COORDINATOR_LOAD_IN_PROGRESS meanwhile) and coordinates the group from then on,
with every offset committed before the failover; the clients find it through
FindCoordinator. A broker that does not lead the group's partition answers the group's
requests with NOT_COORDINATOR. A rolling restart with controlled shutdown moves every
leadership, partitions' and coordinators', away from each node before it stops: clients
writing and reading through it see no error at all.

Deadlines only keep a broken cluster from hanging the suite; they are never assertions
about speed.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional

from checker import History, check
from cluster import Cluster, cluster_factory
from conftest import ck_admin, ck_consumer, ck_produce, ck_producer, wait_until, watermarks
from test_replication import create_replicated_topic, read_everything, wait_for_isr
from workloads import StreamingProducer

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


class CommittingConsumer(threading.Thread):
    """A consumer group member (librdkafka) that reads and commits synchronously after
    every poll that returned records, until told to stop; it keeps every value it read and
    every error that surfaced (from a poll or a commit)."""

    def __init__(self, bootstrap: str, topic: str, group: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.group = bootstrap, topic, group
        self.values: set = set()
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.exc: Optional[BaseException] = None

    def run(self):
        from confluent_kafka import KafkaException

        consumer = ck_consumer(
            self.bootstrap,
            **{
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": True,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 500,
                "topic.metadata.refresh.interval.ms": 1000,
            },
        )
        try:
            consumer.subscribe([self.topic])
            while not self.stop_event.is_set():
                records = consumer.consume(num_messages=200, timeout=0.2)
                good = []
                for r in records:
                    if r.error() is None:
                        good.append(r)
                    else:
                        self.errors.append(f"poll: {r.error()}")
                self.values.update(r.value() for r in good)
                if good:
                    try:
                        consumer.commit(asynchronous=False)
                    except KafkaException as e:
                        self.errors.append(f"commit: {e}")
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.exc = e
        finally:
            consumer.close()


def test_a_rolling_restart_with_controlled_shutdown_under_load_surfaces_no_errors_and_loses_nothing(cluster_factory):
    """Every node in turn is stopped with SIGTERM (controlled shutdown: the controller moves
    its leaderships, partitions' and coordinators', before it exits) and started again,
    while an idempotent acks=all producer writes and a consumer group reads and commits.
    Neither client sees an error; every acknowledged record is stored once at its offset
    (checker.py); the group reads every record, and its committed offsets are the ends of
    the partitions."""
    from confluent_kafka import TopicPartition

    cluster = cluster_factory(3, settings=SETTINGS)
    topic, group, partitions = "rolling", "rolling-readers", 3
    create_replicated_topic(cluster, topic, partitions=partitions, config={"min.insync.replicas": "2"})
    wait_for_isr(cluster, topic)
    for node in cluster.nodes.values():
        node.keep_port()
    bootstrap = cluster.bootstrap

    history = History()
    producer = StreamingProducer(bootstrap, topic, partitions, history)
    consumer = CommittingConsumer(bootstrap, topic, group)
    producer.start()
    consumer.start()
    try:
        producer.wait_acked(300, "300 acknowledged records before the rolling restart")
        for node in list(cluster.nodes.values()):
            at = producer.acked()
            node.stop()
            print(f"node {node.node_id} stopped cleanly")
            producer.wait_acked(at + 200, f"200 more acknowledged records while node {node.node_id} is down")
            node.start()
            cluster.wait_for_brokers(3)
            wait_for_isr(cluster, topic, timeout=60)
            wait_for_isr(cluster, "__consumer_offsets", timeout=60)
        producer.wait_acked(producer.acked() + 200, "200 more acknowledged records after the rolling restart")
    finally:
        producer.stop_event.set()
    producer.finish()
    assert producer.errors == [], f"the producer saw errors: {producer.errors[:5]}"

    final = read_everything(cluster, topic, partitions, history)
    report = check(history, final)
    print(report.summary())
    report.assert_clean()
    every = {value for records in final.values() for _, value in records}
    wait_until(
        lambda: consumer.exc is not None or every <= consumer.values,
        60,
        f"the group to read all {len(every)} records",
    )
    consumer.stop_event.set()
    consumer.join(30)
    assert consumer.exc is None, f"the consumer crashed: {consumer.exc!r}"
    assert consumer.errors == [], f"the consumer saw errors: {consumer.errors[:5]}"

    ends = {p: high for p, (_, high) in watermarks(cluster.bootstrap, topic, range(partitions)).items()}
    checker = ck_consumer(cluster.bootstrap, **{"group.id": group})
    try:
        committed = {tp.partition: tp.offset for tp in checker.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)}
    finally:
        checker.close()
    assert committed == ends, f"the group's committed offsets {committed} are not the ends of {topic!r} {ends}"
