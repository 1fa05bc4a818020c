"""Partition replication under faults, on clusters of real `strom serve` nodes.

Kafka's replication promises, which these tests hold Strom to while the network between
nodes is cut, a leader is paused, or the whole cluster loses power:

- an acks=all write is acknowledged only once every in-sync replica holds it durably (the
  high watermark passed it); a leader that lost its followers cannot acknowledge, since its
  high watermark cannot advance, and it cannot shrink the ISR to itself without the
  controller;
- when a leader is cut off or stops, the controller fences its broker and elects another
  ISR member, which holds every acknowledged record; writes go on through it;
- a deposed leader, back in the cluster, follows the new leader, truncates what it appended
  but never committed (its log diverged from the new leader's epoch: DivergingEpoch), catches
  up and rejoins the ISR; elected back, it serves exactly the log the others serve;
- a follower that stops fetching leaves the ISR after `replica.lag.time.max.ms`, and acks=all
  goes on with the rest (`min.insync.replicas`=2); healed, it catches up and rejoins;
- after kill -9 of every node at once, every acknowledged record is still there (acked means
  fsynced on every ISR member).

Every test records what its producers were told in a History and hands it, with a read of
every partition from the beginning, to checker.py: no acknowledged record lost, stored twice
or at another offset than acknowledged. Where the test ends with every replica in the ISR,
every node's copy of each partition is then compared with the leader's batch for batch, byte
for byte, after a clean stop.

Network cuts (`network=True`) put each node in its own network namespace; a cut drops the
traffic between two nodes while the test's clients still reach every node, so a cut-off
leader still takes produce requests. Deadlines only keep a broken cluster from hanging the
suite; they are never assertions about speed.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from typing import Optional

import pytest

from checker import OK, History, check
from workloads import StreamingProducer
from cluster import Cluster, cluster_factory
from conftest import ck_admin, ck_produce, ck_producer, read_segment, segments
from test_replication import (
    create_replicated_topic,
    elect_preferred,
    read_everything,
    wait_for_isr,
    wait_for_leader,
    wait_for_views,
)

# The fixture is imported so that pytest finds it; listed here so that pyflakes counts it used.
__all__ = ["cluster_factory"]

# A follower that has not caught up for 2 s leaves the ISR (Kafka's default is 30 s).
LAG = {"replica.lag.time.max.ms": "2000"}
GUARDED = {"min.insync.replicas": "2"}
# The value a test sends to a leader the others have already replaced.
DEPOSED = b"pinned-to-the-deposed-leader"


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


TIMESTAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z\s*")


def log_digest(cluster: Cluster, top: int = 3) -> str:
    """Per node, its warnings and errors and its most repeated lines (timestamps stripped),
    from the output of its current run: what to look at when a wait timed out."""
    out = []
    for node in cluster.nodes.values():
        with node._lines_lock:
            lines = [TIMESTAMP_RE.sub("", line) for line in node._lines]
        counts = Counter(lines)
        bad = [(n, line) for line, n in counts.items() if " WARN " in line or " ERROR " in line]
        out.append(f"node {node.node_id} ({len(lines)} lines):")
        out += [f"  {n}x {line[:300]}" for n, line in sorted(bad, reverse=True)[:top]]
        out += [f"  {n}x {line[:300]}" for line, n in counts.most_common(top) if n > 1 and (n, line) not in bad]
    return "\n".join(out)


@contextlib.contextmanager
def explained(cluster: Cluster):
    """A failed assertion in the block says, too, what the nodes logged."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{e}\n-- what the nodes logged --\n{log_digest(cluster)}") from None


class PinnedProducer:
    """A kafka-python producer (acks=all, never retried, not idempotent) that learned the
    metadata once, from `node` while it led the partition, and never asks again: its writes
    go to that node whatever the cluster decided since. Its sends are recorded in the
    history as producer "pinned"."""

    def __init__(self, node, topic: str, partition: int, history: History, request_timeout_ms: int):
        from kafka import KafkaProducer

        self.topic = topic
        self.partition = partition
        self.history = history
        self.request_timeout_ms = request_timeout_ms
        self.producer = KafkaProducer(
            bootstrap_servers=node.bootstrap,
            acks="all",
            retries=0,
            enable_idempotence=False,
            linger_ms=0,
            request_timeout_ms=request_timeout_ms,
            delivery_timeout_ms=request_timeout_ms + 10000,
            metadata_max_age_ms=3600000,
            max_block_ms=20000,
        )
        assert partition in self.producer.partitions_for(topic)

    def send(self, value: bytes):
        """Sends; returns (op, future)."""
        op = self.history.send("pinned", value, self.partition)
        return op, self.producer.send(self.topic, value=value, partition=self.partition)

    def outcome(self, op, future) -> tuple[Optional[int], Optional[str]]:
        """(acknowledged offset, None) or (None, the error), recorded in the history."""
        try:
            md = future.get(timeout=self.request_timeout_ms / 1000 + 20)
        except Exception as e:  # noqa: BLE001 - any error: not acknowledged
            self.history.info(op, repr(e))
            return None, repr(e)
        self.history.ok(op, md.partition, md.offset)
        return md.offset, None

    def close(self):
        self.producer.close(timeout=10)


def assert_never_stored(final: dict, value: bytes):
    """A write that only a deposed leader took (appended, if at all, in an epoch the new
    leader's log does not continue) is in no log once the old leader truncated its tail."""
    places = [(p, offset) for p, records in final.items() for offset, v in records if v == value]
    assert not places, f"{value!r}, taken only by a deposed leader, is stored at {places}: its diverged tail was kept"


def check_clean(cluster: Cluster, topic: str, partitions: int, history: History) -> dict:
    """Every partition read from the beginning, the history checked clean against it;
    returns the read."""
    final = read_everything(cluster, topic, partitions, history)
    report = check(history, final)
    print(report.summary())
    report.assert_clean()
    return final


def assert_replicas_identical(cluster: Cluster, topic: str, partitions: int):
    """With every replica in the ISR, one more acks=all record per partition (so that every
    copy ends at the same offset), a clean stop of every node, `strom verify` on each data
    directory, and each node's copy of each partition holding its leader's batches byte for
    byte: no diverged tail left anywhere."""
    view = wait_for_isr(cluster, topic)
    ck_produce(
        cluster.bootstrap,
        topic,
        [{"value": b"last-%d" % p, "partition": p} for p in range(partitions)],
        producer=ck_producer(cluster.bootstrap, acks="all"),
    )
    for node in cluster.nodes.values():
        node.stop()
    for node in cluster.nodes.values():
        node.assert_verify_ok(f"on node {node.node_id}")
    for p in range(partitions):
        leader = view[p][0]
        copies = {}
        for node_id in view[p][1]:
            directory = cluster[node_id].partition_dir(topic, p)
            assert directory.is_dir(), f"node {node_id}, a replica of {topic}-{p}, has no {directory}"
            copies[node_id] = [batch for seg in segments(directory) for batch in read_segment(seg)]
        theirs = copies[leader]
        for node_id, batches in copies.items():
            mine = [b.raw for b in batches]
            if mine != [b.raw for b in theirs]:
                at = next((i for i, (a, b) in enumerate(zip(mine, [b.raw for b in theirs])) if a != b), min(len(mine), len(theirs)))
                raise AssertionError(
                    f"{topic}-{p}: node {node_id}'s copy differs from leader {leader}'s at batch {at} "
                    f"({len(batches)} vs {len(theirs)} batches): "
                    f"{batches[at] if at < len(batches) else None} vs {theirs[at] if at < len(theirs) else None}"
                )


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("leader_role", ["leader-only", "leader-and-active-controller"])
def test_a_leader_cut_off_from_the_other_nodes_acknowledges_nothing_is_replaced_and_after_the_heal_truncates_its_uncommitted_tail_and_rejoins(
    cluster_factory, leader_role
):
    """A partition's leader loses the network to both other nodes (all three are voters),
    while clients still reach it; in one case it is only a broker to the others, in the other
    also the active controller, whose role the other two take over. An idempotent acks=all
    producer writes all along. While cut, the old leader acknowledges no acks=all write (its
    followers stopped fetching, and it cannot shrink the ISR without the controller's
    majority): a producer that still sends it a write gets an error, never an offset. The
    other two elect an ISR member to lead, and the producer's writes are acknowledged through
    it. Healed, the old leader follows the new one, drops what it appended alone, catches
    up, and every node shows all three in the ISR. Every acknowledged record is stored
    exactly once at its acknowledged offset (checker.py); elected back as the preferred
    leader, the old leader serves exactly that log, and every copy is byte for byte the
    leader's."""
    cluster = cluster_factory(3, settings=LAG, network=True)
    with explained(cluster):
        topic = "cut-leader"
        partitions = 3
        create_replicated_topic(cluster, topic, partitions=partitions, config=GUARDED)
        view = wait_for_isr(cluster, topic)
        controller = cluster.controller()
        want_controller = leader_role == "leader-and-active-controller"
        p = next((i for i, (leader, _, _) in view.items() if (leader == controller) == want_controller), None)
        assert p is not None, f"no partition led {'by' if want_controller else 'by other than'} the controller {controller}: {view}"
        old, replicas, isr_before = view[p]
        assert old == replicas[0], f"a new partition is led by its first replica (replicas {replicas}, leader {old})"
        others = [n for n in cluster.nodes if n != old]

        history = History()
        pinned = PinnedProducer(cluster[old], topic, p, history, request_timeout_ms=10000)
        producer = StreamingProducer(cluster.bootstrap, topic, partitions, history)
        try:
            op, future = pinned.send(b"pinned-before-the-cut")
            offset, error = pinned.outcome(op, future)
            assert offset is not None, f"an acks=all write to the leader with all three in sync failed: {error}"
            producer.start()
            producer.wait_acked(300, "300 acknowledged records before the cut")

            for other in others:
                cluster.network.cut(old, other)
            if want_controller:
                new_controller = cluster.wait_for_new_controller(old)
                print(f"node {old}, cut off, was the active controller; node {new_controller} is now")
            new_view = wait_for_views(
                cluster,
                topic,
                lambda v: v[p][0] not in (old, -1),
                f"nodes {others} to agree on a leader of {topic}-{p} other than the cut-off node {old}",
                nodes=others,
            )
            new = new_view[p][0]
            assert new in isr_before, f"node {new} leads {topic}-{p} but was not in its ISR {isr_before}"
            print(f"{topic}-{p}: node {new} leads after the cut, ISR {new_view[p][2]}")

            # The cut-off node still takes this write (the client reaches it and its metadata
            # names it leader), but must not acknowledge it.
            op, future = pinned.send(DEPOSED)
            at_election = producer.acked(p)
            offset, error = pinned.outcome(op, future)
            print(f"the cut-off old leader {old} answered an acks=all write with: {error}")
            assert offset is None, (
                f"node {old}, cut off from both other replicas of {topic}-{p} and deposed, acknowledged an acks=all write "
                f"at offset {offset}"
            )
            producer.wait_acked(
                at_election + 200, f"200 more records acknowledged on {topic}-{p} through its new leader {new}", partition=p
            )

            cluster.network.heal()
            wait_for_isr(cluster, topic, timeout=60)
            cluster.wait_for_brokers(3)
            producer.wait_acked(producer.acked() + 100, "100 more acknowledged records after the heal")
        finally:
            producer.stop_event.set()
            pinned.close()
        producer.finish()

        final = check_clean(cluster, topic, partitions, history)
        assert_never_stored(final, DEPOSED)
        view = wait_for_isr(cluster, topic)
        preferred = [i for i, (_, replicas, _) in view.items() if replicas[0] == old]
        assert p in preferred
        elect_preferred(cluster, topic, preferred)
        for i in preferred:
            wait_for_leader(cluster, topic, i, lambda leader: leader == old, f"node {old} to lead {topic}-{i} again")
        again = read_everything(cluster, topic, partitions, history)
        for i in range(partitions):
            assert again[i] == final[i], (
                f"{topic}-{i}: node {old}, elected back, serves another log than its successor did "
                f"({len(again[i])} vs {len(final[i])} records; first difference at "
                f"{next((a for a, b in zip(again[i], final[i]) if a != b), None)})"
            )
        assert_replicas_identical(cluster, topic, partitions)


def test_a_paused_leader_is_replaced_and_on_waking_acknowledges_nothing_follows_the_new_leader_truncates_and_rejoins_the_isr(
    cluster_factory,
):
    """SIGSTOP of a partition's leader (not the active controller) while an idempotent
    acks=all producer writes: once the broker session times out the controller fences it and
    elects another ISR member, and writes are acknowledged through the new leader. A write
    sent to the paused old leader waits in its socket; on SIGCONT the old leader finds that
    it no longer leads, and that write is never acknowledged (a deposed leader's high
    watermark cannot advance: its followers fetch from the new leader). It follows, drops
    what it alone appended, catches up and rejoins the ISR. Every acknowledged record is
    stored exactly once at its offset (checker.py); elected back, the old leader serves the
    same log, and every copy is byte for byte the leader's."""
    cluster = cluster_factory(3, settings=LAG)
    with explained(cluster):
        topic = "paused-leader"
        partitions = 3
        create_replicated_topic(cluster, topic, partitions=partitions, config=GUARDED)
        view = wait_for_isr(cluster, topic)
        controller = cluster.controller()
        p = next(i for i, (leader, _, _) in view.items() if leader != controller)
        old, replicas, isr_before = view[p]
        assert old == replicas[0], f"a new partition is led by its first replica (replicas {replicas}, leader {old})"

        history = History()
        pinned = PinnedProducer(cluster[old], topic, p, history, request_timeout_ms=30000)
        producer = StreamingProducer(cluster.bootstrap, topic, partitions, history)
        try:
            op, future = pinned.send(b"pinned-before-the-pause")
            offset, error = pinned.outcome(op, future)
            assert offset is not None, f"an acks=all write to the leader with all three in sync failed: {error}"
            producer.start()
            producer.wait_acked(300, "300 acknowledged records before the pause")

            cluster[old].pause()
            new = wait_for_leader(cluster, topic, p, lambda leader: leader != old, f"a leader of {topic}-{p} other than the paused node {old}")
            assert new in isr_before, f"node {new} leads {topic}-{p} but was not in its ISR {isr_before}"
            op, future = pinned.send(DEPOSED)
            at_election = producer.acked(p)
            producer.wait_acked(
                at_election + 200, f"200 more records acknowledged on {topic}-{p} through its new leader {new}", partition=p
            )
            cluster[old].resume()

            offset, error = pinned.outcome(op, future)
            print(f"the old leader {old}, woken, answered an acks=all write sent while it was paused with: {error}")
            assert offset is None, (
                f"node {old}, deposed while paused, acknowledged an acks=all write at offset {offset} of {topic}-{p} "
                f"(node {new} leads it now)"
            )
            wait_for_isr(cluster, topic, timeout=60)
            cluster.wait_for_brokers(3)
            producer.wait_acked(producer.acked() + 100, "100 more acknowledged records after the old leader woke")
        finally:
            if cluster[old].paused:
                cluster[old].resume()
            producer.stop_event.set()
            pinned.close()
        producer.finish()

        final = check_clean(cluster, topic, partitions, history)
        assert_never_stored(final, DEPOSED)
        view = wait_for_isr(cluster, topic)
        preferred = [i for i, (_, replicas, _) in view.items() if replicas[0] == old]
        elect_preferred(cluster, topic, preferred)
        for i in preferred:
            wait_for_leader(cluster, topic, i, lambda leader: leader == old, f"node {old} to lead {topic}-{i} again")
        again = read_everything(cluster, topic, partitions, history)
        for i in range(partitions):
            assert again[i] == final[i], (
                f"{topic}-{i}: node {old}, elected back, serves another log than its successor did "
                f"({len(again[i])} vs {len(final[i])} records)"
            )
        assert_replicas_identical(cluster, topic, partitions)


def test_no_acknowledged_write_is_lost_when_every_node_is_killed_9_at_once_and_restarted(cluster_factory):
    """Power loss of the whole cluster: kill -9 of all three nodes at once while an
    idempotent acks=all producer writes to three partitions. Restarted on their data
    directories (and ports, so the producer reconnects), the nodes elect leaders, the producer
    writes on, and every record acknowledged before or after the crash is stored exactly once
    at its acknowledged offset (checker.py): an acks=all acknowledgement means the record was
    fsynced on every ISR member, so no choice of leader after the restart can lack it. All
    three replicas rejoin the ISR and hold the same batches."""
    cluster = cluster_factory(3, settings=LAG)
    with explained(cluster):
        topic = "power-loss"
        partitions = 3
        create_replicated_topic(cluster, topic, partitions=partitions, config=GUARDED)
        wait_for_isr(cluster, topic)
        for node in cluster.nodes.values():
            node.keep_port()

        history = History()
        producer = StreamingProducer(cluster.bootstrap, topic, partitions, history)
        producer.start()
        try:
            producer.wait_acked(1000, "1000 acknowledged records before the power loss")
            barrier = threading.Barrier(len(cluster.nodes))

            def kill(node):
                barrier.wait(10)
                node.kill9()

            killers = [threading.Thread(target=kill, args=(node,)) for node in cluster.nodes.values()]
            for t in killers:
                t.start()
            for t in killers:
                t.join(40)
            assert not any(n.alive() for n in cluster.nodes.values()), "a node survived kill -9"
            at_kill = producer.acked()
            print(f"{at_kill} records acknowledged when every node was killed")

            cluster.start()
            wait_for_views(
                cluster,
                topic,
                lambda v: all(leader in cluster.nodes for leader, _, _ in v.values()),
                f"every partition of {topic!r} to have a leader after the restart",
            )
            # Every replica fetches what it lacks and rejoins the ISR.
            wait_for_isr(cluster, topic, timeout=60)
            producer.wait_acked(at_kill + 500, "500 more acknowledged records after the restart")
        finally:
            producer.stop_event.set()
        producer.finish()

        final = check_clean(cluster, topic, partitions, history)
        assert sum(len(r) for r in final.values()) >= at_kill
        assert_replicas_identical(cluster, topic, partitions)


def test_a_follower_cut_off_from_its_leader_only_leaves_the_isr_acks_all_goes_on_and_after_the_heal_it_catches_up_and_rejoins(
    cluster_factory,
):
    """A follower loses the network to its partition's leader only, and still reaches the
    active controller (neither of the two is it): it stops fetching, and after
    replica.lag.time.max.ms the leader has the controller drop it from the ISR, which every
    node's metadata then shows as the other two, with the leader unchanged. acks=all writes
    go on being acknowledged (min.insync.replicas=2). Healed, the follower fetches what it
    missed and rejoins the ISR. Every acknowledged record is stored exactly once at its
    offset (checker.py), and every copy is byte for byte the leader's."""
    cluster = cluster_factory(3, settings=LAG, network=True)
    with explained(cluster):
        topic = "cut-follower"
        partitions = 3
        create_replicated_topic(cluster, topic, partitions=partitions, config=GUARDED)
        view = wait_for_isr(cluster, topic)
        controller = cluster.controller()
        p = next(i for i, (leader, _, _) in view.items() if leader != controller)
        leader, replicas, _ = view[p]
        follower = next(r for r in replicas if r not in (leader, controller))

        history = History()
        producer = StreamingProducer(cluster.bootstrap, topic, partitions, history)
        producer.start()
        try:
            producer.wait_acked(300, "300 acknowledged records before the cut")
            cluster.network.cut(leader, follower)
            shrunk = wait_for_views(
                cluster,
                topic,
                lambda v: v[p][2] == sorted({leader, controller}),
                f"every node to show {topic}-{p} without node {follower}, cut off from its leader {leader}, in the ISR",
            )
            assert shrunk[p][0] == leader, f"{topic}-{p} changed leader from {leader} to {shrunk[p][0]} when a follower was cut off"
            assert cluster.controller() == controller, "the active controller changed when a follower was cut off from a leader"
            at_shrink = producer.acked(p)
            producer.wait_acked(at_shrink + 300, f"300 more records acknowledged on {topic}-{p} with ISR {shrunk[p][2]}", partition=p)

            cluster.network.heal()
            wait_for_isr(cluster, topic, timeout=60)
            producer.wait_acked(producer.acked() + 100, "100 more acknowledged records after the heal")
        finally:
            producer.stop_event.set()
        producer.finish()

        final = check_clean(cluster, topic, partitions, history)
        acknowledged = [op for op in history.sends if op.status == OK and op.partition == p]
        assert len(final[p]) >= len(acknowledged)
        assert_replicas_identical(cluster, topic, partitions)



def test_a_follower_whose_log_ends_below_its_leaders_log_start_starts_over_there_and_rejoins_the_isr(cluster_factory):
    """A follower is stopped; meanwhile its leader takes more records and DeleteRecords
    moves the leader's log start past everything the follower has. Restarted, the follower
    is told its fetch offset is out of range, starts its log over at the leader's log start
    (at the batch that holds it), catches up and rejoins the ISR. After a clean stop its
    batches are the leader's, byte for byte, from the batch holding the leader's log start
    on, and `strom verify` finds its log intact."""
    from confluent_kafka import TopicPartition

    cluster = cluster_factory(3, settings=LAG)
    with explained(cluster):
        topic = "behind-start"
        create_replicated_topic(cluster, topic, partitions=1, config={"segment.bytes": "16384"})
        view = wait_for_isr(cluster, topic)
        leader, replicas, _ = view[0]
        follower = next(r for r in replicas if r != leader)
        producer = ck_producer(cluster.bootstrap, acks="all")

        def produce(prefix: bytes, count: int):
            records = [{"value": b"%s%05d" % (prefix, i), "partition": 0} for i in range(count)]
            ck_produce(cluster.bootstrap, topic, records, producer=producer)

        produce(b"a", 100)
        cluster[follower].stop()
        wait_for_isr(cluster, topic, isr=set(replicas) - {follower})
        produce(b"b", 2000)
        admin = ck_admin(cluster.bootstrap)
        deleted = admin.delete_records([TopicPartition(topic, 0, 1500)])
        low = next(iter(deleted.values())).result(30)
        assert low.low_watermark == 1500, f"DeleteRecords left the log start at {low.low_watermark}"

        cluster[follower].start()
        wait_for_isr(cluster, topic, timeout=60)
        produce(b"c", 100)
        wait_for_isr(cluster, topic, timeout=60)
        for node in cluster.nodes.values():
            node.stop()
        theirs = [b for seg in segments(cluster[leader].partition_dir(topic, 0)) for b in read_segment(seg)]
        mine = [b for seg in segments(cluster[follower].partition_dir(topic, 0)) for b in read_segment(seg)]
        assert mine, f"node {follower} holds no batches of {topic}-0"
        first = mine[0]
        assert first.base_offset <= 1500 < first.base_offset + first.last_offset_delta + 1, (
            f"node {follower}'s log starts with the batch at {first.base_offset}, not the one holding the leader's log start 1500"
        )
        assert mine[0].base_offset > 99, f"node {follower} kept records below the leader's log start: {mine[0]}"
        expected = [b.raw for b in theirs if b.base_offset >= first.base_offset]
        assert [b.raw for b in mine] == expected, (
            f"node {follower}'s {len(mine)} batches differ from leader {leader}'s {len(expected)} from offset {first.base_offset}"
        )
        assert mine[-1].base_offset + mine[-1].last_offset_delta + 1 == 2200
        cluster[follower].assert_verify_ok(f"on node {follower}")


def test_kill_9_of_partition_leaders_round_after_round_under_load_loses_no_acknowledged_write(cluster_factory):
    """Six rounds, each killing -9 the leader of one partition (the next partition each
    round, so the victims change) while an idempotent acks=all producer writes to all three:
    each time an ISR member takes over and the partition takes 100 more acknowledged
    records, then the victim restarts and rejoins the ISR. At the end every acknowledged
    record is stored exactly once at its offset (checker.py) and every replica holds its
    leader's batches byte for byte."""
    cluster = cluster_factory(3, settings=LAG)
    with explained(cluster):
        topic = "many-failovers"
        partitions = 3
        create_replicated_topic(cluster, topic, partitions=partitions, config=GUARDED)
        wait_for_isr(cluster, topic)
        for node in cluster.nodes.values():
            node.keep_port()
        history = History()
        producer = StreamingProducer(cluster.bootstrap, topic, partitions, history)
        producer.start()
        victims = []
        try:
            producer.wait_acked(300, "300 acknowledged records before the first kill")
            for round in range(6):
                p = round % partitions
                view = wait_for_isr(cluster, topic, timeout=60)
                victim = view[p][0]
                at = producer.acked(p)
                cluster[victim].kill9()
                new = wait_for_leader(
                    cluster, topic, p, lambda leader: leader not in (victim, -1), f"round {round}: a leader of {topic}-{p} other than node {victim}"
                )
                assert new in view[p][2], f"round {round}: node {new} leads {topic}-{p} but was not in its ISR {view[p][2]}"
                producer.wait_acked(at + 100, f"round {round}: 100 more records on {topic}-{p} through node {new}", partition=p)
                cluster[victim].start()
                cluster.wait_for_brokers(3)
                victims.append(victim)
            wait_for_isr(cluster, topic, timeout=60)
            producer.wait_acked(producer.acked() + 100, "100 more acknowledged records after the last round")
        finally:
            producer.stop_event.set()
        producer.finish()
        print(f"victims, round by round: {victims}")
        assert len(set(victims)) >= 2, f"every round killed the same node: {victims}"
        check_clean(cluster, topic, partitions, history)
        assert_replicas_identical(cluster, topic, partitions)
