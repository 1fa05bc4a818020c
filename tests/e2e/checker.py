"""A Jepsen-style checker for histories recorded against a Strom cluster under faults.

A test records what its clients did (`History`): every send with its outcome, as seen
by the producer (acknowledged with an offset, definitely failed, or indeterminate:
a timeout, a lost connection, NOT_ENOUGH_REPLICAS_AFTER_APPEND), every transaction with
its outcome, and every poll of every consumer. After healing the cluster, the test
reads every partition from the start (`final_read`, with read_committed) and hands both
to `check`, which reports:

- lost: acknowledged writes missing from the final read;
- duplicated: a value stored more than once;
- inconsistent: an acknowledged offset that holds another value, or a value found at
  another offset than the one acknowledged;
- reordered: one idempotent producer's acknowledged writes to a partition stored out of
  the order it sent them;
- unexpected: a value that was never sent, or whose send definitely failed;
- aborted reads: records of aborted transactions that a read_committed consumer, or the
  final read, saw;
- torn transactions: committed transactions only partly visible;
- poll skips: a consumer that moved past records it never returned;
- non-monotonic polls: a consumer whose offsets on a partition went backwards without a
  rebalance or seek in between.

Indeterminate writes are counted as such: each may be present or absent, never twice.
Every value must be unique across the history (the test's job), so that a value
identifies its send.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

OK, FAIL, INFO = "ok", "fail", "info"


@dataclass
class Send:
    producer: str
    value: bytes
    partition: Optional[int]
    txn: Optional[str] = None
    status: Optional[str] = None  # OK / FAIL / INFO; None until it completes
    offset: Optional[int] = None
    error: Optional[str] = None
    seq: int = 0  # the order the producer sent in


@dataclass
class Txn:
    producer: str
    txn: str
    status: Optional[str] = None  # "commit", "abort", or INFO when the outcome is unknown


@dataclass
class Poll:
    consumer: str
    records: list  # [(partition, offset, value)]
    reset: bool = False  # a rebalance or seek happened right before this poll


@dataclass
class Report:
    acknowledged: int = 0
    failed: int = 0
    indeterminate: int = 0
    indeterminate_present: int = 0
    lost: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    inconsistent: list = field(default_factory=list)
    reordered: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    aborted_reads: list = field(default_factory=list)
    torn_transactions: list = field(default_factory=list)
    poll_skips: list = field(default_factory=list)
    non_monotonic_polls: list = field(default_factory=list)

    ANOMALIES = (
        "lost",
        "duplicated",
        "inconsistent",
        "reordered",
        "unexpected",
        "aborted_reads",
        "torn_transactions",
        "poll_skips",
        "non_monotonic_polls",
    )

    def anomalies(self) -> dict:
        return {name: getattr(self, name) for name in self.ANOMALIES if getattr(self, name)}

    def summary(self) -> str:
        counts = ", ".join(f"{name.replace('_', ' ')} {len(getattr(self, name))}" for name in self.ANOMALIES)
        return (
            f"{self.acknowledged} acknowledged, {self.failed} failed, {self.indeterminate} indeterminate "
            f"({self.indeterminate_present} of them stored); {counts}"
        )

    def assert_clean(self):
        found = self.anomalies()
        if found:
            details = "\n".join(f"  {name}: {items[:5]}{' ...' if len(items) > 5 else ''}" for name, items in found.items())
            raise AssertionError(f"the history has anomalies: {self.summary()}\n{details}")


class History:
    """What the clients of one test did. Thread-safe: producers and consumers record
    from their own threads (and librdkafka's delivery callbacks)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sends: list[Send] = []
        self.txns: dict[str, Txn] = {}
        self.polls: list[Poll] = []
        self._seq = itertools.count()

    def send(self, producer: str, value: bytes, partition: Optional[int] = None, txn: Optional[str] = None) -> Send:
        with self._lock:
            op = Send(producer, value, partition, txn, seq=next(self._seq))
            self.sends.append(op)
            return op

    def ok(self, op: Send, partition: int, offset: int):
        with self._lock:
            op.status, op.partition, op.offset = OK, partition, offset

    def fail(self, op: Send, error: str):
        with self._lock:
            op.status, op.error = FAIL, error

    def info(self, op: Send, error: str):
        with self._lock:
            op.status, op.error = INFO, error

    def begin(self, producer: str, txn: str) -> Txn:
        with self._lock:
            t = self.txns[txn] = Txn(producer, txn)
            return t

    def end(self, txn: str, status: str):
        with self._lock:
            self.txns[txn].status = status

    def poll(self, consumer: str, records: list, reset: bool = False):
        with self._lock:
            self.polls.append(Poll(consumer, list(records), reset))


def check(history: History, final_read: dict) -> Report:
    """`final_read`: partition -> [(offset, value)] of every record a read_committed
    consumer finds, read from the start after the faults healed."""
    report = Report()
    sends = history.sends
    by_value = {op.value: op for op in sends}
    assert len(by_value) == len(sends), "the test must send unique values"

    stored: dict[bytes, list] = defaultdict(list)  # value -> [(partition, offset)]
    at: dict[tuple, bytes] = {}
    for partition, records in final_read.items():
        for offset, value in records:
            stored[value].append((partition, offset))
            at[(partition, offset)] = value

    aborted = {name for name, t in history.txns.items() if t.status == "abort"}
    committed = {name for name, t in history.txns.items() if t.status == "commit"}

    for op in sends:
        # A send in a transaction counts by its transaction's outcome.
        status = op.status
        if op.txn is not None:
            status = {"commit": status, "abort": FAIL}.get(history.txns[op.txn].status, INFO)
            if status == OK and op.status != OK:
                status = INFO  # committed, but this send's own report never came
        places = stored.get(op.value, [])
        if len(places) > 1:
            report.duplicated.append((op.value, places))
        if status == OK:
            report.acknowledged += 1
            if not places:
                report.lost.append((op.value, op.partition, op.offset))
            elif op.offset is not None and (op.partition, op.offset) not in places:
                report.inconsistent.append((op.value, f"acknowledged at {op.partition}@{op.offset}", f"stored at {places}"))
        elif status == FAIL:
            report.failed += 1
            if places and op.txn is None:
                report.unexpected.append((op.value, f"its send failed ({op.error}) but it is stored at {places}"))
        else:
            report.indeterminate += 1
            report.indeterminate_present += bool(places)
    for (partition, offset), value in at.items():
        op = by_value.get(value)
        if op is None:
            report.unexpected.append((value, f"never sent, stored at {partition}@{offset}"))
        elif op.status == OK and op.offset is not None and (op.partition, op.offset) != (partition, offset):
            if (op.partition, op.offset) in at and at[(op.partition, op.offset)] != op.value:
                report.inconsistent.append((op.value, f"{op.partition}@{op.offset} holds {at[(op.partition, op.offset)]!r}"))

    # One producer's acknowledged writes to a partition keep its send order.
    per_stream: dict[tuple, list] = defaultdict(list)
    for op in sends:
        if op.status == OK and op.offset is not None:
            per_stream[(op.producer, op.partition)].append(op)
    for (producer, partition), ops in per_stream.items():
        ops.sort(key=lambda op: op.seq)
        for before, after in zip(ops, ops[1:]):
            if after.offset <= before.offset:
                report.reordered.append((producer, partition, before.value, before.offset, after.value, after.offset))

    # Transactions: nothing of an aborted one visible, all of a committed one.
    for value, places in stored.items():
        op = by_value.get(value)
        if op is not None and op.txn in aborted:
            report.aborted_reads.append(("final read", op.txn, value, places))
    for name in committed:
        members = [op for op in sends if op.txn == name]
        visible = [op for op in members if op.value in stored]
        if visible and len(visible) != len(members):
            report.torn_transactions.append((name, f"{len(visible)} of {len(members)} records visible"))
        if not visible and members:
            report.lost.extend((op.value, op.partition, op.offset) for op in members)

    # Polls: per consumer and partition, offsets move forward without skipping.
    visible_offsets = {p: sorted(o for o, _ in records) for p, records in final_read.items()}
    last: dict[tuple, int] = {}
    for poll in history.polls:
        if poll.reset:
            for key in [k for k in last if k[0] == poll.consumer]:
                del last[key]
        for partition, offset, value in poll.records:
            op = by_value.get(value)
            if op is not None and op.txn in aborted:
                report.aborted_reads.append((poll.consumer, op.txn, value, [(partition, offset)]))
            key = (poll.consumer, partition)
            if key in last:
                previous = last[key]
                if offset <= previous:
                    report.non_monotonic_polls.append((poll.consumer, partition, previous, offset))
                else:
                    between = [o for o in visible_offsets.get(partition, []) if previous < o < offset]
                    if between:
                        report.poll_skips.append((poll.consumer, partition, previous, offset, between[:5]))
            last[key] = offset
    return report
