"""Transactions across the brokers of a cluster of real `strom serve` nodes.

A transaction's coordinator is the leader of its transactional id's partition of
`__transaction_state`; the partitions it writes to are led by any broker. Ending it, the
coordinator writes the COMMIT or ABORT markers into the partitions it leads and has the
other partitions' leaders write theirs (WriteTxnMarkers), each durable on every in-sync
replica before the transaction is recorded complete. Offsets sent to a transaction land
in the group's partition of `__consumer_offsets` on whichever broker leads it.

A consume-transform-produce loop (txn_transformer.py) keeps its exactly-once promise
when the broker coordinating its transactions is killed -9 under it and the loop itself is
killed -9 mid-way. When that broker also coordinated the loop's group, librdkafka can hang
in send_offsets_to_transaction() (confluentinc/librdkafka#5511): the loop's watchdog then
gives up, and a new run takes over, as an application would.

Deadlines only keep a broken cluster from hanging the suite; they are never assertions
about speed.
"""

from __future__ import annotations

import time
from collections import Counter

from cluster import cluster_factory
from confluent_kafka import TopicPartition
from conftest import ck_consumer, ck_produce, ck_producer, create_topic, wait_until, watermarks
from test_replication import create_replicated_topic, wait_for_isr
from test_transactions import Transformer, View, input_index

# The fixture is imported so that pytest finds it; listed here so that pyflakes counts it used.
__all__ = ["cluster_factory"]

SETTINGS = {
    "transaction.state.log.num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "replica.lag.time.max.ms": "2000",
}


def transactional_producer(bootstrap: str, transactional_id: str):
    """A librdkafka transactional producer, its transactions initialized."""
    producer = ck_producer(
        bootstrap,
        **{"transactional.id": transactional_id, "transaction.timeout.ms": 60000, "enable.idempotence": True},
    )
    producer.init_transactions(30)
    return producer


def transaction(producer, topic: str, partitions: int, prefix: bytes, commit: bool):
    """One transaction of 30 records `<prefix>-<i>` round robin over the partitions,
    committed or aborted."""
    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=b"%s-%03d" % (prefix, i), partition=i % partitions)
    if commit:
        producer.commit_transaction(60)
    else:
        producer.abort_transaction(60)


def read_committed(bootstrap: str, topic: str, partitions: int, timeout: float = 60) -> dict:
    """partition -> values a read_committed consumer finds, read until its position reaches
    each partition's high watermark (so the last stable offset passed every marker)."""

    ends = {p: high for p, (_, high) in watermarks(bootstrap, topic, range(partitions)).items()}
    consumer = ck_consumer(bootstrap, **{"isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: dict = {p: [] for p in range(partitions)}
    try:
        deadline = time.monotonic() + timeout
        while True:
            positions = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in range(partitions)])}
            if all(positions[p] >= ends[p] for p in range(partitions)):
                return values
            assert time.monotonic() < deadline, (
                f"a read_committed consumer stopped at {positions} below the high watermarks {ends}: "
                "a transaction's marker is missing"
            )
            for record in consumer.consume(num_messages=500, timeout=0.5):
                if record.error() is None:
                    values[record.partition()].append(record.value())
    finally:
        consumer.close()


def test_a_transaction_over_partitions_led_by_every_broker_commits_and_aborts_everywhere(cluster_factory):
    """A transactional producer (librdkafka) writes to three partitions led by three
    different brokers: a committed transaction, an aborted one, and another committed one.
    A read_committed consumer reads every partition to its high watermark (so every
    marker was written, by the coordinator itself or by the partition's leader through
    WriteTxnMarkers) and finds the committed records only, in order."""
    cluster = cluster_factory(3, settings=SETTINGS)
    topic, partitions = "payments", 3
    create_replicated_topic(cluster, topic, partitions=partitions, config={"min.insync.replicas": "2"})
    view = wait_for_isr(cluster, topic)
    leaders = {leader for leader, _, _ in view.values()}
    assert len(leaders) == 3, f"the partitions of {topic!r} are not led by three brokers: {view}"

    producer = transactional_producer(cluster.bootstrap, "cluster-payments")
    transaction(producer, topic, partitions, b"first", commit=True)
    transaction(producer, topic, partitions, b"aborted", commit=False)
    transaction(producer, topic, partitions, b"second", commit=True)

    found = read_committed(cluster.bootstrap, topic, partitions)
    for p in range(partitions):
        expected = [b"%s-%03d" % (prefix, i) for prefix in (b"first", b"second") for i in range(30) if i % partitions == p]
        assert found[p] == expected, f"{topic}-{p} (led by node {view[p][0]}) read_committed: {found[p]}"


def test_offsets_sent_to_a_transaction_are_committed_by_the_groups_coordinator_on_another_broker(cluster_factory):
    """A consume-transform-produce loop (librdkafka): records read by a group are copied
    into another topic in transactions that also commit the group's offsets
    (send_offsets_to_transaction). The group's coordinator and the transaction's need not
    be the same broker; after the commits the group's committed offsets are the ends of
    its input, and the copies are all there, read_committed."""

    cluster = cluster_factory(3, settings=SETTINGS)
    source, sink, partitions = "orders", "orders-copy", 3
    for name in (source, sink):
        create_replicated_topic(cluster, name, partitions=partitions, config={"min.insync.replicas": "2"})
        wait_for_isr(cluster, name)
    plain = ck_producer(cluster.bootstrap, acks="all")
    for i in range(90):
        plain.produce(source, value=b"o-%03d" % i, partition=i % partitions)
    assert plain.flush(30) == 0

    group = "copier"
    consumer = ck_consumer(
        cluster.bootstrap,
        **{"group.id": group, "isolation.level": "read_committed", "enable.auto.commit": False},
    )
    consumer.subscribe([source])
    producer = transactional_producer(cluster.bootstrap, "copier-1")
    copied = 0
    try:
        deadline = time.monotonic() + 90
        while copied < 90:
            assert time.monotonic() < deadline, f"only {copied} of 90 records copied"
            records = [r for r in consumer.consume(num_messages=30, timeout=0.5) if r.error() is None]
            if not records:
                continue
            producer.begin_transaction()
            for r in records:
                producer.produce(sink, value=r.value(), partition=r.partition())
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(60)
            copied += len(records)
        committed = consumer.committed([TopicPartition(source, p) for p in range(partitions)], timeout=30)
    finally:
        consumer.close()
    assert {tp.partition: tp.offset for tp in committed} == {p: 30 for p in range(partitions)}
    found = read_committed(cluster.bootstrap, sink, partitions)
    assert sorted(v for values in found.values() for v in values) == [b"o-%03d" % i for i in range(90)]


def java_partition(key: str, partitions: int) -> int:
    """Kafka's partition of a group or transactional id: abs(String.hashCode) % partitions."""
    h = 0
    for c in key:
        h = (31 * h + ord(c)) & 0xFFFFFFFF
    if h >= 2**31:
        h -= 2**32
    return (abs(h) if h != -(2**31) else 0) % partitions


def test_a_killed_transaction_coordinator_is_replaced_by_a_replica_that_knows_the_transactions(cluster_factory):
    """A transactional producer commits a transaction; the broker leading its
    transactional id's partition of __transaction_state (its coordinator) is killed -9.
    Another replica leads that partition, loads it, and coordinates the same producer: its
    next transactions commit and abort as asked, and a read_committed consumer finds the
    committed records only, in every partition."""
    cluster = cluster_factory(3, settings=SETTINGS)
    topic, partitions, transactional_id = "ledger", 3, "ledger-writer"
    create_replicated_topic(cluster, topic, partitions=partitions, config={"min.insync.replicas": "2"})
    wait_for_isr(cluster, topic)
    producer = transactional_producer(cluster.bootstrap, transactional_id)
    transaction(producer, topic, partitions, b"before", commit=True)
    state_partition = java_partition(transactional_id, 3)
    victim = cluster.leader("__transaction_state", state_partition)
    print(f"{transactional_id!r} is coordinated by node {victim} (__transaction_state-{state_partition}); killing it")
    cluster[victim].kill9()
    survivor = cluster.running()[0]
    wait_until(
        lambda: cluster.leader("__transaction_state", state_partition, via=survivor) not in (victim, -1),
        60,
        f"a new leader of __transaction_state-{state_partition}",
    )
    transaction(producer, topic, partitions, b"after", commit=True)
    transaction(producer, topic, partitions, b"aborted", commit=False)
    transaction(producer, topic, partitions, b"last", commit=True)

    found = read_committed(survivor.bootstrap, topic, partitions)
    for p in range(partitions):
        expected = [b"%s-%03d" % (prefix, i) for prefix in (b"before", b"after", b"last") for i in range(30) if i % partitions == p]
        assert found[p] == expected, f"{topic}-{p} read_committed after the coordinator failover: {found[p]}"


def test_a_transactional_copy_is_exactly_once_when_its_coordinator_and_then_the_copy_itself_are_killed(
    cluster_factory, tmp_path
):
    """txn_transformer.py copies 6,000 records (read_committed in, a transaction per 200
    records with the consumer's offsets, a seeded fifth aborted on purpose). Mid-way the
    broker coordinating its transactional id is killed -9; the copy goes on (a new run
    takes over if librdkafka gave up on the old one), and later the copy itself is killed
    -9 and started again. The read_committed output holds every input record exactly
    once, in input order per partition, and nothing else: no duplicate, no record of an
    aborted transaction, no part of a transaction without the rest."""
    records, batch = 6_000, 200
    cluster = cluster_factory(3, settings=SETTINGS)
    for topic in ("copy-in", "copy-out"):
        create_replicated_topic(cluster, topic, partitions=3, config={"min.insync.replicas": "2"})
        wait_for_isr(cluster, topic)
    ck_produce(cluster.bootstrap, "copy-in", [
        {"key": str(i).encode(), "value": f"in-{i}".encode(), "partition": i % 3} for i in range(records)
    ])
    runs: list[Transformer] = []

    def run(seed: int) -> Transformer:
        args = ["copy-in", "copy-out", "copiers", "copier", "--seed", str(seed), "--expected", str(records),
                "--batch", str(batch)]
        t = Transformer(cluster.bootstrap, tmp_path, f"run-{len(runs) + 1}", args)
        runs.append(t)
        t.wait_for(lambda: t.events("start"), 90, f"{t.name} to fetch its offsets")
        return t

    def until_committed(at_least: int):
        """The current run commits past `at_least` input records; a run that gave up (a
        fatal error after the broker kill) is replaced by a new one."""
        deadline = time.monotonic() + 180
        while runs[-1].last_committed() < at_least:
            assert time.monotonic() < deadline, runs[-1].describe()
            if runs[-1].proc.poll() is not None:
                assert runs[-1].events("fatal"), f"{runs[-1].name} stopped without a fatal error\n{runs[-1].describe()}"
                run(len(runs) + 1)
            time.sleep(0.05)

    try:
        run(1)
        until_committed(1_500)
        state_partition = java_partition("copier", 3)
        victim = cluster.leader("__transaction_state", state_partition)
        group_coordinator = cluster.leader("__consumer_offsets", java_partition("copiers", 3))
        print(f"'copier' is coordinated by node {victim}, group 'copiers' by node {group_coordinator}; killing {victim}")
        cluster[victim].kill9()
        until_committed(3_500)
        runs[-1].kill9()
        cluster[victim].start()
        last = run(len(runs) + 1)
        assert last.finish(240) == 0, last.describe()
        assert last.events("done") == [["done", str(records)]], last.describe()
        assert sum(int(line[2]) for t in runs for line in t.events("aborted")) > 0, "no transaction was aborted"

        committed = View(cluster.bootstrap, "copy-out", range(3), "read_committed")
        try:
            committed.read_to(committed.high_watermarks(), timeout=120)
            values = [r.value for r in committed.records]
            twice = [v for v, n in Counter(values).items() if n > 1]
            assert not twice, f"{len(twice)} input records are committed more than once, e.g. {twice[:5]}"
            indexes = [input_index(r.value) for r in committed.records]
            missing = set(range(records)) - set(indexes)
            assert not missing, f"{len(missing)} input records are missing, e.g. {sorted(missing)[:5]}"
            for p in range(3):
                sequence = [i for r, i in zip(committed.records, indexes) if r.partition == p]
                assert sequence == sorted(sequence), f"copy-out-{p} is not in input order"
                assert all(i % 3 == p for i in sequence), f"copy-out-{p} holds another partition's records"
        finally:
            committed.close()
    finally:
        for t in runs:
            t.close()


def test_the_admin_commands_gather_groups_transactions_and_producers_from_every_broker(cluster_factory):
    """Each broker knows the groups and transactions it coordinates and the producers of the
    partitions it leads. Asked through one node, `strom group list` and `strom transaction
    list` gather them from every broker, `strom transaction describe` asks each id's
    coordinator, `strom transaction describe-producers` and `strom topic describe` (sizes)
    each partition's leader: nothing held elsewhere is missing."""
    cluster = cluster_factory(3, settings=SETTINGS)
    topic = "spread"
    create_topic(cluster.bootstrap, topic, partitions=3)
    ids = [f"writer-{i}" for i in range(6)]
    groups = [f"readers-{i}" for i in range(6)]
    for transactional_id in ids:
        producer = transactional_producer(cluster.bootstrap, transactional_id)
        transaction(producer, topic, 3, transactional_id.encode(), commit=True)
    for group in groups:
        consumer = ck_consumer(cluster.bootstrap, **{"group.id": group})
        consumer.commit(offsets=[TopicPartition(topic, p, 1) for p in range(3)], asynchronous=False)
        consumer.close()

    # Held on more than one broker, so asking one broker alone would miss some.
    def spread(internal: str, keys: list[str]) -> set[int]:
        return {cluster.leader(internal, java_partition(key, 3)) for key in keys}

    assert len(spread("__transaction_state", ids)) > 1 and len(spread("__consumer_offsets", groups)) > 1
    assert len({cluster.leader(topic, p) for p in range(3)}) > 1

    via = cluster[1]
    listed = {row["group"] for row in via.cli_json("group", "list")}
    assert set(groups) <= listed, f"groups missing from `strom group list`: {set(groups) - listed}"
    listed = {row["transactional_id"] for row in via.cli_json("transaction", "list")}
    assert set(ids) <= listed, f"transactions missing from `strom transaction list`: {set(ids) - listed}"
    described = via.cli_json("transaction", "describe", *ids)
    assert [(d["transactional_id"], d["state"]) for d in described] == [(i, "CompleteCommit") for i in ids]
    producers = via.cli_json("transaction", "describe-producers", "--topic", topic)
    assert {row["partition"] for row in producers} == {0, 1, 2}, producers
    sizes = {p["partition"]: p["size_bytes"] for p in via.cli_json("topic", "describe", topic)["partitions"]}
    assert all(size > 0 for size in sizes.values()) and len(sizes) == 3, sizes
