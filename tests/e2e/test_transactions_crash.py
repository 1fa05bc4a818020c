"""Kafka transactions across a broker crash: the broker is killed with SIGKILL while
transactions are in various states and restarted on the same port.

- A transaction left open at the crash stays invisible to read_committed consumers, which
  are held at its first offset (the last stable offset is recovered from the log and the
  producer state snapshots); a new producer with the same transactional.id fences the old
  one and aborts it.
- Committed and aborted transactions, interleaved with each other and with
  non-transactional writes, read the same after the crash, and after the active segments'
  aborted-transaction indexes (.txnindex) are deleted: the broker rebuilds them from the
  markers in the log.
- A transaction open at the crash is aborted by the broker once past its
  transaction.timeout.ms, with no client asking: the coordinator is reloaded at startup.
- Consumer group offsets sent in transactions (send_offsets_to_transaction) are those of
  the committed transaction after the crash, never those of an aborted or open one.
- A crash while a commit is on its way leaves the transaction whole: committed in every
  partition or aborted in every partition, and committed if the producer was told so.

Consumers read "to the end" by waiting for librdkafka's end-of-partition event at or past
the high watermark (see test_transactions.py); for read_committed that needs the last
stable offset to have reached the high watermark. Records are compared per partition,
in log order.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from conftest import ck_consumer, ck_produce, ck_producer, create_topic, wait_until
from test_transactions import FENCED, View, Wire, closing, send, txn_producer  # noqa: F401 - closing is a fixture

PARTITIONS = (0, 1)


def per_partition(view: View) -> dict[int, list[bytes]]:
    out = {p: [] for p in view.partitions}
    for r in view.records:
        out[r.partition].append(r.value)
    return out


def read_views(bootstrap: str, topic: str, closing, partitions=PARTITIONS):
    """Fresh read_committed and read_uncommitted views of the topic, each read to the
    high watermark; returns their records per partition."""
    committed = View(bootstrap, topic, partitions, "read_committed")
    uncommitted = View(bootstrap, topic, partitions, "read_uncommitted")
    closing += [committed, uncommitted]
    ends = committed.high_watermarks()
    committed.read_to(ends)
    uncommitted.read_to(ends)
    result = per_partition(committed), per_partition(uncommitted)
    committed.close()
    uncommitted.close()
    return result


def crash_restart(broker):
    broker.kill9()
    broker.start()
    return broker.bootstrap


def close_all(*producers):
    """Producers closed while the broker still runs (all their transactions are over), so
    none lingers reconnecting to a stopped broker."""
    for producer in producers:
        try:
            producer.close()
        except KafkaException as error:
            # A fenced producer reports its fatal error again on close.
            assert error.args[0].fatal(), f"closing a producer failed with {error}"


def assert_fenced(producer, what: str):
    """The old producer's commit must fail: it was fenced (or its transaction aborted)."""
    with pytest.raises(KafkaException) as failed:
        producer.commit_transaction(30)
    error = failed.value.args[0]
    assert error.code() != KafkaError._TIMED_OUT and (
        error.fatal() or error.txn_requires_abort() or error.code() in FENCED
    ), f"{what}: commit failed with {error}, not with a transaction error"


# --------------------------------------------------------------------------------------
# a. Open transaction at the crash
# --------------------------------------------------------------------------------------


def test_open_transaction_at_crash_is_aborted_by_fencing(broker, closing):
    broker.keep_port()
    bootstrap = broker.bootstrap
    topic = "open-at-crash"
    # Small segments: the open transaction spans segment rolls, so the producer state
    # snapshots taken at a roll hold it open, and recovery starts from one of them.
    create_topic(bootstrap, topic, len(PARTITIONS), config={"segment.bytes": "300"})
    before = {p: [b"before-%d-%d" % (p, i) for i in range(3)] for p in PARTITIONS}
    old = {p: [b"old-%d-%d" % (p, i) for i in range(5)] for p in PARTITIONS}
    after = {p: [b"after-%d-%d" % (p, i) for i in range(2)] for p in PARTITIONS}
    new = {p: [b"new-%d-%d" % (p, i) for i in range(4)] for p in PARTITIONS}

    plain = ck_producer(bootstrap)
    for p in PARTITIONS:
        ck_produce(bootstrap, topic, [{"value": v, "partition": p} for v in before[p]], producer=plain)

    stale = txn_producer(bootstrap, "crash-open")
    stale.init_transactions(30)
    stale.begin_transaction()
    for p in PARTITIONS:
        send(stale, topic, old[p], partition=p)
    # Written after the open transaction's records, outside it: held back too.
    for p in PARTITIONS:
        ck_produce(bootstrap, topic, [{"value": v, "partition": p} for v in after[p]], producer=plain)

    broker.kill9()
    segment_counts = [len(list(broker.partition_dir(topic, p).glob("*.log"))) for p in PARTITIONS]
    assert min(segment_counts) >= 2, f"segments per partition: {segment_counts}"
    broker.start()
    bootstrap = broker.bootstrap

    # The transaction is still open after the restart: read_committed consumers stop at
    # its first offset in each partition (the last stable offset was recovered).
    held = View(bootstrap, topic, PARTITIONS, "read_committed")
    uncommitted = View(bootstrap, topic, PARTITIONS, "read_uncommitted")
    closing += [held, uncommitted]
    expected_log = {p: before[p] + old[p] + after[p] for p in PARTITIONS}
    uncommitted.read_to({p: len(expected_log[p]) for p in PARTITIONS})
    assert per_partition(uncommitted) == expected_log, "the log after the crash"
    wait_until(lambda: held.reached({p: len(before[p]) for p in PARTITIONS}), 60,
               "read_committed consumers to reach their end after the restart")
    for _ in range(5):  # it stays there while the transaction is open
        held.poll()
    assert held.end == {p: len(before[p]) for p in PARTITIONS}, (
        f"read_committed end of partitions at {held.end} after the restart, expected the open transaction's "
        f"first offsets {({p: len(before[p]) for p in PARTITIONS})}"
    )
    assert per_partition(held) == before, "read_committed saw records of the transaction open at the crash"
    held.close()
    uncommitted.close()

    # A new producer with the same transactional.id fences the old one: its open
    # transaction is aborted.
    fresh = txn_producer(bootstrap, "crash-open")
    fresh.init_transactions(60)
    assert_fenced(stale, "the producer whose transaction was open at the crash")
    fresh.begin_transaction()
    for p in PARTITIONS:
        send(fresh, topic, new[p], partition=p)
    fresh.commit_transaction(30)

    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == {p: before[p] + after[p] + new[p] for p in PARTITIONS}
    assert everything == {p: before[p] + old[p] + after[p] + new[p] for p in PARTITIONS}

    # Producer ids handed out after the crash are new ones.
    other = txn_producer(bootstrap, "crash-other")
    other.init_transactions(30)
    wire = Wire(broker.host, broker.port)
    closing.append(wire)
    described = wire.describe_transactions(["crash-open", "crash-other"])
    assert [described[i]["error"] for i in ("crash-open", "crash-other")] == [0, 0], described
    assert described["crash-open"]["producer_id"] != described["crash-other"]["producer_id"], described
    wire.close()

    close_all(plain, stale, fresh, other)
    broker.stop()
    broker.assert_verify_ok("after a transaction open at a crash was aborted by fencing")


# --------------------------------------------------------------------------------------
# b. Committed and aborted transactions before the crash
# --------------------------------------------------------------------------------------


class Script:
    """The expected log: values per partition in write order, and which were aborted."""

    def __init__(self):
        self.log = {p: [] for p in PARTITIONS}
        self.aborted: set[bytes] = set()
        self.open: dict[str, list[bytes]] = {}

    def plain(self, bootstrap, producer, topic, name: str, counts: dict[int, int]):
        for p, n in counts.items():
            values = [b"%s-p%d-%d" % (name.encode(), p, i) for i in range(n)]
            ck_produce(bootstrap, topic, [{"value": v, "partition": p} for v in values], producer=producer)
            self.log[p] += values

    def begin(self, producer, name: str):
        producer.begin_transaction()
        self.open[name] = []

    def write(self, producer, topic, name: str, counts: dict[int, int]):
        for p, n in counts.items():
            values = [b"%s-p%d-%d" % (name.encode(), p, i) for i in range(n)]
            send(producer, topic, values, partition=p)
            self.log[p] += values
            self.open[name] += values

    def end(self, producer, name: str, commit: bool):
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
            self.aborted.update(self.open[name])
        del self.open[name]

    def committed(self):
        return {p: [v for v in values if v not in self.aborted] for p, values in self.log.items()}


def test_committed_and_aborted_transactions_survive_crash(broker, closing):
    broker.keep_port()
    bootstrap = broker.bootstrap
    topic = "settled"
    # Small segments: transactions and their markers spread over many segments, an
    # aborted transaction's first records in an earlier segment than its marker.
    create_topic(bootstrap, topic, len(PARTITIONS), config={"segment.bytes": "400"})
    plain = ck_producer(bootstrap)
    a = txn_producer(bootstrap, "settle-a")
    b = txn_producer(bootstrap, "settle-b")
    a.init_transactions(30)
    b.init_transactions(30)
    s = Script()

    s.plain(bootstrap, plain, topic, "plain1", {0: 2, 1: 2})
    s.begin(a, "a1")
    s.write(a, topic, "a1", {0: 3, 1: 3})
    s.end(a, "a1", commit=True)
    s.begin(b, "b1")
    s.write(b, topic, "b1", {0: 2})
    s.end(b, "b1", commit=False)
    s.plain(bootstrap, plain, topic, "plain2", {0: 1, 1: 2})
    # Two transactions open at once in the same partitions, with a plain write between
    # their records: one aborts, the other commits.
    s.begin(a, "a2")
    s.begin(b, "b2")
    s.write(a, topic, "a2", {0: 3})
    s.write(b, topic, "b2", {0: 3, 1: 2})
    s.plain(bootstrap, plain, topic, "plain3", {0: 2})
    s.write(a, topic, "a2", {1: 2, 0: 1})
    s.end(a, "a2", commit=False)
    s.write(b, topic, "b2", {0: 1})
    s.end(b, "b2", commit=True)
    s.begin(a, "a3")
    s.write(a, topic, "a3", {1: 4})
    s.end(a, "a3", commit=True)
    s.begin(b, "b3")
    s.write(b, topic, "b3", {0: 2, 1: 2})
    s.end(b, "b3", commit=False)
    s.plain(bootstrap, plain, topic, "plain4", {0: 2, 1: 1})
    s.begin(a, "a4")
    s.write(a, topic, "a4", {0: 5})
    s.end(a, "a4", commit=False)
    s.begin(b, "b4")
    s.write(b, topic, "b4", {1: 3, 0: 1})
    s.end(b, "b4", commit=True)
    s.plain(bootstrap, plain, topic, "plain5", {0: 1, 1: 1})
    # Last, an aborted transaction in both partitions: its markers end the logs, so they
    # are in the active segments.
    s.begin(a, "a5")
    s.write(a, topic, "a5", {0: 2, 1: 2})
    s.end(a, "a5", commit=False)

    expected_committed = s.committed()
    assert all(expected_committed[p] != s.log[p] for p in PARTITIONS), "every partition has aborted records"

    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == expected_committed, "read_committed before the crash"
    assert everything == s.log, "read_uncommitted before the crash"

    bootstrap = crash_restart(broker)
    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == expected_committed, "read_committed after kill -9 and restart"
    assert everything == s.log, "read_uncommitted after kill -9 and restart"

    # The active segments' aborted-transaction indexes lost, as a power failure may lose
    # them (a sealed segment's index is made durable when it is sealed; the active
    # segment's only at a clean shutdown): the broker rebuilds them from the markers.
    broker.kill9()
    indexes = {path: path.read_bytes() for part in PARTITIONS
               for path in sorted(broker.partition_dir(topic, part).glob("*.txnindex"))}
    segment_counts = [len(list(broker.partition_dir(topic, part).glob("*.log"))) for part in PARTITIONS]
    assert min(segment_counts) >= 3, f"segments per partition: {segment_counts}"
    assert sum(len(data) for data in indexes.values()) == 34 * 8, (
        f"eight aborted transactions, eight 34-byte index entries: {({p.name: len(d) for p, d in indexes.items()})}"
    )
    for part in PARTITIONS:
        active = max(broker.partition_dir(topic, part).glob("*.log"))
        index = active.with_suffix(".txnindex")
        assert indexes.get(index), f"partition {part}: no aborted transaction in the active segment {active.name}"
        index.unlink()
    broker.start()
    bootstrap = broker.bootstrap
    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == expected_committed, "read_committed after the active .txnindex files were deleted"
    assert everything == s.log, "read_uncommitted after the active .txnindex files were deleted"
    rebuilt = {path: path.read_bytes() if path.exists() else None for path in indexes}
    assert rebuilt == indexes, "the rebuilt aborted-transaction indexes differ from those written before"

    # A new instance of a transactional.id with settled transactions starts cleanly.
    a2 = txn_producer(bootstrap, "settle-a")
    a2.init_transactions(60)
    a2.begin_transaction()
    send(a2, topic, [b"late-p0"], partition=0)
    a2.commit_transaction(30)
    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == {0: expected_committed[0] + [b"late-p0"], 1: expected_committed[1]}
    assert everything == {0: s.log[0] + [b"late-p0"], 1: s.log[1]}

    close_all(plain, a, b, a2)
    broker.stop()
    broker.assert_verify_ok("after committed and aborted transactions and two crashes")


# --------------------------------------------------------------------------------------
# c. Transaction timeout across a restart
# --------------------------------------------------------------------------------------


def test_transaction_open_at_crash_times_out_after_restart(broker, closing):
    broker.keep_port()
    bootstrap = broker.bootstrap
    topic = "timeout-at-crash"
    # Small segments: the open transaction spans segment rolls, so the producer state
    # snapshots taken at a roll hold it open, and recovery starts from one of them.
    create_topic(bootstrap, topic, len(PARTITIONS), config={"segment.bytes": "300"})
    before = {p: [b"before-%d" % p] for p in PARTITIONS}
    stale_values = {p: [b"stale-%d-%d" % (p, i) for i in range(6)] for p in PARTITIONS}
    plain = ck_producer(bootstrap)
    for p in PARTITIONS:
        ck_produce(bootstrap, topic, [{"value": v, "partition": p} for v in before[p]], producer=plain)

    stale = txn_producer(bootstrap, "crash-slowpoke", **{"transaction.timeout.ms": 3000})
    stale.init_transactions(30)
    stale.begin_transaction()
    for p in PARTITIONS:
        send(stale, topic, stale_values[p], partition=p)

    bootstrap = crash_restart(broker)

    # Nobody asks the broker anything about this transaction: its timer aborts it, and
    # read_committed consumers then reach the high watermark.
    committed = View(bootstrap, topic, PARTITIONS, "read_committed")
    closing.append(committed)
    ends = {p: len(before[p]) + len(stale_values[p]) + 1 for p in PARTITIONS}  # + the abort marker

    def aborted():
        committed.poll()
        highs = committed.high_watermarks()
        return all(highs[p] >= ends[p] and committed.end.get(p, -1) >= highs[p] for p in PARTITIONS)

    wait_until(aborted, 90, "the broker to abort the transaction that timed out across the restart "
                            "(read_committed end at the high watermark)", interval=0.1)
    assert per_partition(committed) == before, "read_committed saw records of the timed-out transaction"
    assert committed.high_watermarks() == ends, "one abort marker per partition after the transaction's records"
    committed.close()

    assert_fenced(stale, "the producer whose transaction timed out across the restart")

    again = txn_producer(bootstrap, "crash-slowpoke")
    again.init_transactions(30)
    again.begin_transaction()
    for p in PARTITIONS:
        send(again, topic, [b"again-%d" % p], partition=p)
    again.commit_transaction(30)
    committed_values, everything = read_views(bootstrap, topic, closing)
    assert committed_values == {p: before[p] + [b"again-%d" % p] for p in PARTITIONS}
    assert everything == {p: before[p] + stale_values[p] + [b"again-%d" % p] for p in PARTITIONS}

    close_all(plain, stale, again)
    broker.stop()
    broker.assert_verify_ok("after a transaction timed out across a crash")


# --------------------------------------------------------------------------------------
# d. Transactional offset commits across a crash
# --------------------------------------------------------------------------------------

INPUT_PER_PARTITION = 20
GROUP = "ctp-group"


def committed_offsets(bootstrap: str, topic: str, isolation: str) -> dict[int, int]:
    """The group's committed offsets through OffsetFetch (Consumer.committed); -1001
    (OFFSET_INVALID) where nothing is committed. read_committed asks for stable offsets
    (RequireStable): the broker answers UNSTABLE_OFFSET_COMMIT, which librdkafka retries,
    while a transaction holds pending offsets for the group."""
    consumer = ck_consumer(bootstrap, **{"group.id": GROUP, "isolation.level": isolation})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in PARTITIONS], timeout=60)
    finally:
        consumer.close()
    for tp in got:
        assert tp.error is None, f"committed offset of partition {tp.partition}: {tp.error}"
    return {tp.partition: tp.offset for tp in got}


def test_transactional_offsets_across_crash(broker, closing):
    broker.keep_port()
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "ctp-in", len(PARTITIONS))
    create_topic(bootstrap, "ctp-out", len(PARTITIONS))
    inputs = {p: [b"in-%d-%d" % (p, i) for i in range(INPUT_PER_PARTITION)] for p in PARTITIONS}
    for p in PARTITIONS:
        ck_produce(bootstrap, "ctp-in", [{"value": v, "partition": p} for v in inputs[p]])

    # The group's metadata comes from a consumer of the group (assigned, not subscribed:
    # generation -1, so the broker does not check membership).
    group_consumer = ck_consumer(bootstrap, **{"group.id": GROUP, "isolation.level": "read_committed"})
    closing.append(group_consumer)
    group_consumer.assign([TopicPartition("ctp-in", p) for p in PARTITIONS])

    def transform(producer, ranges: dict[int, tuple[int, int]]):
        """One transaction's work: inputs [start, end) of each partition written to the
        output, and the group's offsets for the input moved to each end."""
        producer.begin_transaction()
        for p, (start, end) in ranges.items():
            send(producer, "ctp-out", [b"out:" + v for v in inputs[p][start:end]], partition=p)
        offsets = [TopicPartition("ctp-in", p, end) for p, (_start, end) in sorted(ranges.items())]
        producer.send_offsets_to_transaction(offsets, group_consumer.consumer_group_metadata(), 30)
        return {p: [b"out:" + v for v in inputs[p][start:end]] for p, (start, end) in ranges.items()}

    first = txn_producer(bootstrap, "ctp-txn")
    first.init_transactions(30)
    committed_out = transform(first, {0: (0, 5), 1: (0, 7)})
    first.commit_transaction(30)
    aborted_out = transform(first, {0: (5, 9), 1: (7, 11)})
    first.abort_transaction(30)
    assert committed_offsets(bootstrap, "ctp-in", "read_committed") == {0: 5, 1: 7}, "before the crash"

    # A third transaction sends offsets and is open at the crash.
    open_out = transform(first, {0: (5, 12), 1: (7, 13)})
    first.flush(30)

    bootstrap = crash_restart(broker)
    # The open transaction's offsets are pending, not committed: OffsetFetch without
    # RequireStable returns the committed transaction's offsets.
    assert committed_offsets(bootstrap, "ctp-in", "read_uncommitted") == {0: 5, 1: 7}, (
        "after the crash, with a transaction holding pending offsets"
    )

    # A new instance fences the first: the open transaction and its offsets are aborted.
    second = txn_producer(bootstrap, "ctp-txn")
    second.init_transactions(60)
    assert_fenced(first, "the producer whose transaction was open at the crash")
    assert committed_offsets(bootstrap, "ctp-in", "read_committed") == {0: 5, 1: 7}, (
        "after the crash and the abort of the open transaction"
    )
    assert committed_offsets(bootstrap, "ctp-in", "read_uncommitted") == {0: 5, 1: 7}

    # It resumes from the group's offsets and finishes the input.
    rest_out = transform(second, {p: (o, INPUT_PER_PARTITION) for p, o in ((0, 5), (1, 7))})
    second.commit_transaction(30)
    assert committed_offsets(bootstrap, "ctp-in", "read_committed") == {p: INPUT_PER_PARTITION for p in PARTITIONS}

    committed, everything = read_views(bootstrap, "ctp-out", closing)
    expected = {p: committed_out[p] + rest_out[p] for p in PARTITIONS}
    assert committed == expected, "read_committed output: every input record exactly once"
    assert everything == {p: committed_out[p] + aborted_out[p] + open_out[p] + rest_out[p] for p in PARTITIONS}

    # Another crash: the committed offsets are replayed from __consumer_offsets again.
    group_consumer.close()
    closing.remove(group_consumer)
    bootstrap = crash_restart(broker)
    assert committed_offsets(bootstrap, "ctp-in", "read_committed") == {p: INPUT_PER_PARTITION for p in PARTITIONS}, (
        "after a second crash"
    )

    close_all(first, second)
    broker.stop()
    broker.assert_verify_ok("after transactional offset commits and two crashes")


# --------------------------------------------------------------------------------------
# e. A crash around the commit
# --------------------------------------------------------------------------------------

COMMIT_CRASH_ROUNDS = 6


def test_crash_during_commit_is_all_or_nothing(broker, closing):
    """The broker is killed while a commit of a transaction over two partitions is on its
    way: before EndTxn arrives, between the prepared state and the markers, or after. Which
    one depends on timing, so each round accepts both outcomes, but only whole ones: after
    the restart and a new producer with the same transactional.id, read_committed sees all
    of the transaction's records or none, and all of them if the old producer's commit
    succeeded."""
    broker.keep_port()
    bootstrap = broker.bootstrap
    topic = "commit-crash"
    create_topic(bootstrap, topic, len(PARTITIONS))
    delays = [0, 0.0005, 0.001, 0.002, 0.004, 0.008]  # seconds between commit and kill -9
    expected_committed = {p: [] for p in PARTITIONS}
    expected_log = {p: [] for p in PARTITIONS}
    outcomes = []
    for r in range(COMMIT_CRASH_ROUNDS):
        transactional_id = f"commit-crash-{r}"
        values = {p: [b"r%d-p%d-%d" % (r, p, i) for i in range(4)] for p in PARTITIONS}
        old = txn_producer(bootstrap, transactional_id)
        old.init_transactions(30)
        old.begin_transaction()
        for p in PARTITIONS:
            send(old, topic, values[p], partition=p)
        result = []

        def commit(producer=old, result=result):
            try:
                producer.commit_transaction(60)
                result.append(None)
            except KafkaException as error:
                result.append(error.args[0])

        committer = threading.Thread(target=commit)
        committer.start()
        time.sleep(delays[r % len(delays)])
        bootstrap = crash_restart(broker)
        # A new instance: it completes a prepared commit, or aborts a transaction the
        # broker never got to prepare.
        fresh = txn_producer(bootstrap, transactional_id)
        fresh.init_transactions(60)
        committer.join(120)
        assert not committer.is_alive(), f"round {r}: the old producer's commit_transaction did not return"
        error = result[0]
        assert error is None or error.fatal() or error.txn_requires_abort(), (
            f"round {r}: the old producer's commit failed with {error}, not with a transaction error"
        )

        committed_view = View(bootstrap, topic, PARTITIONS, "read_committed")
        closing.append(committed_view)
        committed_view.read_to_end()
        mine = {p: [v for v in values_ if v.startswith(b"r%d-" % r)] for p, values_ in per_partition(committed_view).items()}
        committed_view.close()
        if mine == values:
            outcomes.append("committed")
            for p in PARTITIONS:
                expected_committed[p] += values[p]
        else:
            assert mine == {p: [] for p in PARTITIONS}, (
                f"round {r}: read_committed sees part of the transaction: {mine}"
            )
            assert error is not None, f"round {r}: the commit succeeded but the transaction was aborted"
            outcomes.append("aborted")
        for p in PARTITIONS:
            expected_log[p] += values[p]
        close_all(old, fresh)

    committed, everything = read_views(bootstrap, topic, closing)
    assert committed == expected_committed, f"outcomes by round: {outcomes}"
    assert everything == expected_log
    broker.stop()
    broker.assert_verify_ok(f"after {COMMIT_CRASH_ROUNDS} crashes around a commit")
