"""Kafka transactions: atomic writes, read_committed isolation, fencing and timeouts.

The main test runs a consume-transform-produce loop (txn_transformer.py, its own process)
over 50,000 records, kills it with SIGKILL twice (once with a transaction left open, once
wherever it happens to be) and checks the promise of exactly-once processing: a
read_committed consumer of the output sees every input record exactly once, although
aborted transactions and killed runs wrote some of them more than once to the log.

The others check the pieces one at a time with librdkafka producers and consumers: a second
producer with the same transactional.id fences the first and aborts its transaction; a
transaction that outlives its transaction.timeout.ms is aborted by the broker; a
read_committed consumer stops at the first record of an open transaction (the last stable
offset) even for records written after it outside the transaction; and ListTransactions /
DescribeTransactions report an open transaction.

Consumers read "to the end" by waiting for librdkafka's end-of-partition event at or past
the high watermark: a read_committed consumer reports the end at the last stable offset, so
it only gets there once no transaction holds the partition back.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from conftest import (
    BATCH_HEADER,
    Rec,
    ck_consumer,
    ck_produce,
    ck_producer,
    create_topic,
    norm_headers,
    read_segment,
    segments,
    wait_until,
)
from test_bad_input import Raw

HERE = Path(__file__).parent

# librdkafka reports a fenced transactional producer as _FENCED (fatal); the broker's own
# codes, in case one surfaces unnormalised.
FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}

# Record batch attributes
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def closing():
    """Things with close() (consumers, transformer processes) closed after the test."""
    things = []
    yield things
    for thing in reversed(things):
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - teardown of a failed test must go on
            pass


def txn_producer(bootstrap: str, transactional_id: str, **conf):
    return ck_producer(bootstrap, **{"transactional.id": transactional_id, "enable.idempotence": True, **conf})


def send(producer, topic: str, values: list[bytes], partition: int = 0):
    """Produce values to one partition and wait until every one is delivered."""
    errors = []
    for value in values:
        producer.produce(topic, value=value, partition=partition,
                         on_delivery=lambda err, msg: errors.append(err) if err is not None else None)
    left = producer.flush(30)
    assert left == 0, f"{left} records not delivered within 30s"
    assert not errors, f"delivery errors: {errors[:5]}"


class View:
    """A consumer reading partitions from the beginning at one isolation level.

    It keeps every record and, per partition, the offset of the latest end-of-partition
    event: the high watermark for read_uncommitted, the last stable offset for
    read_committed.
    """

    def __init__(self, bootstrap: str, topic: str, partitions, isolation: str):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = list(partitions)
        self.isolation = isolation
        self.consumer = ck_consumer(bootstrap, **{"isolation.level": isolation, "enable.partition.eof": True})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.records: list[Rec] = []
        self.end: dict[int, int] = {}
        self._offsets = None

    def poll(self, timeout: float = 0.2):
        for m in self.consumer.consume(num_messages=10000, timeout=timeout):
            error = m.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, f"{self.isolation} consumer error event: {error}"
                self.end[m.partition()] = max(self.end.get(m.partition(), -1), m.offset())
                continue
            ts_type, ts = m.timestamp()
            self.records.append(Rec(m.partition(), m.offset(), m.key(), m.value(), norm_headers(m.headers()), ts, ts_type))

    def high_watermarks(self) -> dict[int, int]:
        """From ListOffsets at read_uncommitted: with read_committed it would be the LSO."""
        if self._offsets is None:
            self._offsets = ck_consumer(self.bootstrap, **{"isolation.level": "read_uncommitted"})
        return {
            p: self._offsets.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)[1]
            for p in self.partitions
        }

    def reached(self, ends: dict[int, int]) -> bool:
        self.poll()
        return all(self.end.get(p, -1) >= end for p, end in ends.items())

    def read_to(self, ends: dict[int, int], timeout: float = 60) -> list[bytes]:
        wait_until(
            lambda: self.reached(ends),
            timeout,
            f"a {self.isolation} consumer of {self.topic} to reach {ends} (it is at {self.end})",
            interval=0.01,
        )
        return self.values()

    def read_to_end(self, timeout: float = 60) -> list[bytes]:
        """Everything up to the high watermarks as they are now."""
        return self.read_to(self.high_watermarks(), timeout)

    def values(self) -> list[bytes]:
        return [r.value for r in self.records]

    def close(self):
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None


class Transformer:
    """One txn_transformer.py process; its stdout lines are collected as word lists."""

    def __init__(self, bootstrap: str, tmp_path: Path, name: str, args: list[str]):
        self.name = name
        self.err_path = tmp_path / f"{name}.stderr"
        command = [sys.executable, str(HERE / "txn_transformer.py"), bootstrap, *args]
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                         text=True, bufsize=1)
        self.lines: list[list[str]] = []
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.split())

    def events(self, kind: str) -> list[list[str]]:
        return [line for line in list(self.lines) if line and line[0] == kind]

    def last_committed(self) -> int:
        committed = self.events("committed")
        return int(committed[-1][1]) if committed else -1

    def started_at(self) -> int:
        return int(self.events("start")[0][1])

    def describe(self) -> str:
        stderr = self.err_path.read_text(errors="replace").splitlines()[-20:] if self.err_path.exists() else []
        stdout = [" ".join(line) for line in list(self.lines)[-20:]]
        return (f"---- {self.name}: exit code {self.proc.poll()} ----\nstdout (last 20 lines):\n" + "\n".join(stdout)
                + "\nstderr (last 20 lines):\n" + "\n".join(stderr))

    def wait_for(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not pred():
            if self.proc.poll() is not None:
                self.thread.join(5)
                if pred():
                    return
                raise AssertionError(f"{self.name} exited before {what}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.describe()}")
            time.sleep(0.02)

    def finish(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not finish within {timeout}s\n{self.describe()}") from None
        self.thread.join(5)
        return code

    def kill9(self):
        assert self.proc.poll() is None, f"{self.name} exited before it could be killed\n{self.describe()}"
        self.proc.kill()
        self.proc.wait(10)
        self.thread.join(5)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------------------
# Exactly-once consume-transform-produce
# --------------------------------------------------------------------------------------

INPUT_RECORDS = 50_000
BATCH = 500


def input_index(value: bytes) -> int:
    assert value.startswith(b"out:in-"), f"output value {value!r} does not come from an input record"
    return int(value[len(b"out:in-"):])


def test_transform_loop_is_exactly_once_across_kill9(broker, closing, tmp_path):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "txn-in", 3)
    create_topic(bootstrap, "txn-out", 3)
    ck_produce(bootstrap, "txn-in", [
        {"key": str(i).encode(), "value": f"in-{i}".encode(), "partition": i % 3} for i in range(INPUT_RECORDS)
    ])

    def run(name, seed, *extra):
        args = ["txn-in", "txn-out", "transformers", "transformer-1", "--seed", str(seed),
                "--expected", str(INPUT_RECORDS), "--batch", str(BATCH), *extra]
        t = Transformer(bootstrap, tmp_path, name, args)
        closing.append(t)
        t.wait_for(lambda: t.events("start"), 90, f"{name} to fetch its offsets")
        return t

    # Run 1 leaves a transaction open (records delivered, offsets sent) and is killed.
    first = run("run-1", 1, "--stall-after", "10000")
    first.wait_for(lambda: first.events("stalled"), 120, "run 1 to leave a transaction open")
    first.kill9()
    stalled_records = int(first.events("stalled")[0][2])

    # Run 2 fences run 1, which aborts the open transaction and drops its offsets: it
    # resumes exactly where run 1 last committed. It is killed wherever it is once past
    # 25,000 input records.
    second = run("run-2", 2)
    assert second.started_at() == first.last_committed(), (
        f"run 2 starts at {second.started_at()}, run 1 last committed {first.last_committed()}: "
        "the open transaction's offsets must not count"
    )
    second.wait_for(lambda: second.last_committed() >= 25_000, 120, "run 2 to commit past 25,000 input records")
    second.kill9()

    # Run 3 goes to the end. At most one transaction of run 2 committed after its last report.
    third = run("run-3", 3)
    assert second.last_committed() <= third.started_at() <= second.last_committed() + BATCH, (
        f"run 3 starts at {third.started_at()}, run 2 last reported {second.last_committed()}"
    )
    assert third.finish(240) == 0, third.describe()
    assert third.events("done") == [["done", str(INPUT_RECORDS)]], third.describe()
    runs = (first, second, third)
    aborted_on_purpose = sum(int(line[2]) for t in runs for line in t.events("aborted"))
    assert aborted_on_purpose > 0, "the transformers aborted no transaction on purpose"

    committed_view = View(bootstrap, "txn-out", range(3), "read_committed")
    uncommitted_view = View(bootstrap, "txn-out", range(3), "read_uncommitted")
    closing += [committed_view, uncommitted_view]
    ends = committed_view.high_watermarks()
    committed_view.read_to(ends, timeout=120)
    uncommitted_view.read_to(ends, timeout=120)
    committed = committed_view.records
    uncommitted = uncommitted_view.records

    # read_committed: every input record exactly once, in input order per partition, with
    # its key and partition.
    counts = Counter(r.value for r in committed)
    twice = [v for v, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} input records are committed more than once, e.g. {twice[:5]}"
    indexes = [input_index(r.value) for r in committed]
    missing = set(range(INPUT_RECORDS)) - set(indexes)
    assert not missing, f"{len(missing)} input records are missing from the committed output, e.g. {sorted(missing)[:5]}"
    assert len(committed) == INPUT_RECORDS
    for r, i in zip(committed, indexes):
        assert (r.partition, r.key) == (i % 3, str(i).encode()), f"output {r} does not match input record {i}"
    for p in range(3):
        sequence = [i for r, i in zip(committed, indexes) if r.partition == p]
        assert sequence == sorted(sequence), f"output partition {p} is not in input order"

    # read_uncommitted: the same records at the same offsets, plus those of aborted
    # transactions, each of which is an input record that was then processed again and
    # committed.
    by_position = {(r.partition, r.offset): r.value for r in uncommitted}
    for r in committed:
        assert by_position.get((r.partition, r.offset)) == r.value, (
            f"read_uncommitted has {by_position.get((r.partition, r.offset))!r} where read_committed has {r}"
        )
    committed_positions = {(r.partition, r.offset) for r in committed}
    only_uncommitted = [r for r in uncommitted if (r.partition, r.offset) not in committed_positions]
    assert len(uncommitted) > INPUT_RECORDS
    assert len(only_uncommitted) == len(uncommitted) - INPUT_RECORDS
    for r in only_uncommitted:
        i = input_index(r.value)
        assert (r.partition, r.key) == (i % 3, str(i).encode()), f"aborted output {r} does not match input record {i}"
        assert r.value in counts, f"aborted output {r} was never committed afterwards"
    assert len(only_uncommitted) >= stalled_records + aborted_on_purpose, (
        f"{len(only_uncommitted)} records only visible to read_uncommitted, but the open transaction of run 1 "
        f"had {stalled_records} and the transformers aborted {aborted_on_purpose}"
    )

    committed_view.close()
    uncommitted_view.close()
    broker.stop()
    broker.assert_verify_ok("after transactions, aborts and fenced producers")


# --------------------------------------------------------------------------------------
# Fencing
# --------------------------------------------------------------------------------------


def test_second_producer_fences_first(broker, closing):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "fenced", 1)
    first_values = [b"first-%d" % i for i in range(10)]
    second_values = [b"second-%d" % i for i in range(10)]

    first = txn_producer(bootstrap, "shared-id")
    first.init_transactions(30)
    first.begin_transaction()
    send(first, "fenced", first_values)

    # The same transactional.id again: the broker aborts the first producer's transaction
    # and bumps the epoch.
    second = txn_producer(bootstrap, "shared-id")
    second.init_transactions(60)

    with pytest.raises(KafkaException) as fenced:
        first.produce("fenced", value=b"first-after-fencing", partition=0)
        first.commit_transaction(30)
    error = fenced.value.args[0]
    assert error.fatal() or error.code() in FENCED, f"the fenced producer got {error}, not a fencing error"

    second.begin_transaction()
    send(second, "fenced", second_values)
    second.commit_transaction(30)

    committed = View(bootstrap, "fenced", [0], "read_committed")
    uncommitted = View(bootstrap, "fenced", [0], "read_uncommitted")
    closing += [committed, uncommitted]
    assert committed.read_to_end() == second_values
    # The first producer's records are in the log (aborted); its write after fencing is not.
    assert uncommitted.read_to_end() == first_values + second_values


# --------------------------------------------------------------------------------------
# Transaction timeout
# --------------------------------------------------------------------------------------


def test_transaction_past_its_timeout_is_aborted(broker, closing):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "slow", 1)
    stale_values = [b"stale-%d" % i for i in range(10)]
    stale = txn_producer(bootstrap, "slowpoke", **{"transaction.timeout.ms": 3000})
    stale.init_transactions(30)
    stale.begin_transaction()
    send(stale, "slow", stale_values)

    committed = View(bootstrap, "slow", [0], "read_committed")
    uncommitted = View(bootstrap, "slow", [0], "read_uncommitted")
    closing += [committed, uncommitted]

    # The producer goes quiet. Once the broker aborts the transaction (abort marker written),
    # the last stable offset moves past its records up to the high watermark.
    def aborted():
        committed.poll()
        high = committed.high_watermarks()[0]
        return high >= len(stale_values) and committed.end.get(0, -1) >= high

    wait_until(aborted, 90, "the broker to abort the timed-out transaction (read_committed end at the high watermark)",
               interval=0.1)
    assert committed.values() == [], "a read_committed consumer saw records of the aborted transaction"
    assert uncommitted.read_to_end() == stale_values, "the aborted records are in the log for read_uncommitted"

    with pytest.raises(KafkaException) as failed:
        stale.commit_transaction(30)
    error = failed.value.args[0]
    assert error.code() != KafkaError._TIMED_OUT and (error.fatal() or error.txn_requires_abort()), (
        f"committing the timed-out transaction failed with {error}, not with a transaction error"
    )

    # Nothing holds read_committed consumers back: new transactions, from another
    # transactional.id and from a new producer with the timed-out one, become visible.
    prompt_values = [b"prompt-%d" % i for i in range(5)]
    prompt = txn_producer(bootstrap, "prompt")
    prompt.init_transactions(30)
    prompt.begin_transaction()
    send(prompt, "slow", prompt_values)
    prompt.commit_transaction(30)
    assert committed.read_to_end() == prompt_values

    again_values = [b"again-%d" % i for i in range(3)]
    again = txn_producer(bootstrap, "slowpoke")
    again.init_transactions(30)
    again.begin_transaction()
    send(again, "slow", again_values)
    again.commit_transaction(30)
    assert committed.read_to_end() == prompt_values + again_values
    assert uncommitted.read_to_end() == stale_values + prompt_values + again_values


# --------------------------------------------------------------------------------------
# Last stable offset
# --------------------------------------------------------------------------------------


def test_read_committed_waits_for_open_transaction(broker, closing):
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "held", 1)
    before = [b"before-%d" % i for i in range(5)]
    in_txn = [b"txn-%d" % i for i in range(10)]
    after = [b"after-%d" % i for i in range(5)]

    ck_produce(bootstrap, "held", [{"value": v, "partition": 0} for v in before])
    txn = txn_producer(bootstrap, "holder")
    txn.init_transactions(30)
    txn.begin_transaction()
    send(txn, "held", in_txn)
    # Written after the transaction's records, outside any transaction.
    ck_produce(bootstrap, "held", [{"value": v, "partition": 0} for v in after])

    committed = View(bootstrap, "held", [0], "read_committed")
    uncommitted = View(bootstrap, "held", [0], "read_uncommitted")
    closing += [committed, uncommitted]
    assert uncommitted.read_to_end() == before + in_txn + after

    wait_until(lambda: committed.poll() or 0 in committed.end, 30, "a read_committed consumer to reach its end")
    assert committed.end[0] == len(before), (
        f"read_committed end of partition at {committed.end[0]}, expected the open transaction's first offset {len(before)}"
    )
    for _ in range(5):  # it stays there while the transaction is open
        committed.poll()
    assert committed.values() == before, "read_committed saw records at or after the open transaction's first offset"

    txn.commit_transaction(30)
    assert committed.read_to_end() == before + in_txn + after


# --------------------------------------------------------------------------------------
# ListTransactions / DescribeTransactions
# --------------------------------------------------------------------------------------
#
# confluent-kafka 2.16.1 (tests/e2e/requirements.txt) has no AdminClient.list_transactions /
# describe_transactions (nor has librdkafka), so the requests are hand-built: both are
# flexible-version APIs (request header v2, response header v1, compact strings and arrays).

LIST_TRANSACTIONS = 66
DESCRIBE_TRANSACTIONS = 65
API_VERSIONS = 18
TRANSACTIONAL_ID_NOT_FOUND = 105


def uvarint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def cstr(s: str) -> bytes:
    data = s.encode()
    return uvarint(len(data) + 1) + data


def carray(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


NO_TAGS = b"\x00"


class Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def fixed(self, fmt: str):
        (v,) = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return v

    def uvarint(self) -> int:
        shift = n = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7

    def varint(self) -> int:
        n = self.uvarint()
        return (n >> 1) ^ -(n & 1)

    def cstr(self):
        n = self.uvarint() - 1
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def carray(self, item) -> list:
        n = self.uvarint() - 1
        return [item() for _ in range(max(n, 0))]

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()


class Wire(Raw):
    """Hand-built transaction requests on one TCP connection."""

    def request(self, api_key: int, version: int, body: bytes, flexible: bool = True) -> Decoder:
        self.corr += 1
        client_id = b"strom-e2e-txn"
        header = struct.pack(">hhih", api_key, version, self.corr, len(client_id)) + client_id
        if flexible:
            header += NO_TAGS
        self.send_frame(header + body)
        (size,) = struct.unpack(">i", self.recv_exact(4))
        r = Decoder(self.recv_exact(size))
        assert r.fixed("i") == self.corr, "response to another request"
        if flexible:
            r.tags()
        return r

    def api_versions(self) -> dict[int, tuple[int, int]]:
        r = self.request(API_VERSIONS, 0, b"", flexible=False)
        assert r.fixed("h") == 0
        return {k: (lo, hi) for k, lo, hi in ((r.fixed("h"), r.fixed("h"), r.fixed("h")) for _ in range(r.fixed("i")))}

    def list_transactions(self, states=(), producer_ids=()) -> dict[str, tuple[int, str]]:
        """transactional id -> (producer id, state)"""
        body = carray([cstr(s) for s in states]) + carray([struct.pack(">q", p) for p in producer_ids]) + NO_TAGS
        r = self.request(LIST_TRANSACTIONS, 0, body)
        r.fixed("i")  # throttle
        error = r.fixed("h")
        assert error == 0, f"ListTransactions error {error}"
        r.carray(r.cstr)  # unknown state filters

        def state():
            tid, pid, st = r.cstr(), r.fixed("q"), r.cstr()
            r.tags()
            return tid, (pid, st)

        listed = dict(r.carray(state))
        r.tags()
        return listed

    def describe_transactions(self, ids) -> dict[str, dict]:
        r = self.request(DESCRIBE_TRANSACTIONS, 0, carray([cstr(i) for i in ids]) + NO_TAGS)
        r.fixed("i")  # throttle

        def topic():
            name = r.cstr()
            partitions = r.carray(lambda: r.fixed("i"))
            r.tags()
            return name, sorted(partitions)

        def state():
            d = {"error": r.fixed("h"), "id": r.cstr(), "state": r.cstr(), "timeout_ms": r.fixed("i"),
                 "start_ms": r.fixed("q"), "producer_id": r.fixed("q"), "producer_epoch": r.fixed("h")}
            d["topics"] = dict(r.carray(topic))
            r.tags()
            return d

        described = {d["id"]: d for d in r.carray(state)}
        r.tags()
        return described


def producer_epoch(batch) -> int:
    return BATCH_HEADER.unpack_from(batch.raw, 0)[10]


def control_type(batch) -> int:
    """0 abort, 1 commit: the key of the control batch's one record."""
    r = Decoder(batch.raw[BATCH_HEADER.size:])
    r.varint()  # record length
    r.fixed("b")  # attributes
    r.varint()  # timestamp delta
    r.varint()  # offset delta
    key_length = r.varint()
    assert key_length >= 4, f"control record key of {key_length} bytes"
    return struct.unpack_from(">hh", r.data, r.pos)[1]


def test_list_and_describe_transactions(broker, closing):
    bootstrap = broker.bootstrap
    wire = Wire(broker.host, broker.port)
    closing.append(wire)
    versions = wire.api_versions()
    missing = [name for key, name in ((LIST_TRANSACTIONS, "ListTransactions"), (DESCRIBE_TRANSACTIONS, "DescribeTransactions"))
               if key not in versions]
    if missing:
        pytest.skip(f"the broker does not advertise {', '.join(missing)}")

    create_topic(bootstrap, "described", 2)
    since_ms = int(time.time() * 1000)
    producer = txn_producer(bootstrap, "described-txn", **{"transaction.timeout.ms": 45000})
    producer.init_transactions(30)
    producer.begin_transaction()
    send(producer, "described", [b"p0-a", b"p0-b"], partition=0)
    send(producer, "described", [b"p1-a"], partition=1)

    listed = wire.list_transactions()
    assert "described-txn" in listed, f"ListTransactions: {listed}"
    pid, state = listed["described-txn"]
    assert state == "Ongoing", f"ListTransactions state {state}"
    assert pid >= 0
    assert "described-txn" in wire.list_transactions(states=["Ongoing"])
    assert "described-txn" not in wire.list_transactions(states=["CompleteCommit", "CompleteAbort"])
    assert set(wire.list_transactions(producer_ids=[pid])) == {"described-txn"}

    described = wire.describe_transactions(["described-txn", "never-used"])
    assert described["never-used"]["error"] == TRANSACTIONAL_ID_NOT_FOUND, described["never-used"]
    open_txn = described["described-txn"]
    assert open_txn["error"] == 0, open_txn
    assert open_txn["state"] == "Ongoing", open_txn
    assert open_txn["producer_id"] == pid, open_txn
    assert open_txn["producer_epoch"] >= 0, open_txn
    assert open_txn["timeout_ms"] == 45000, open_txn
    assert since_ms <= open_txn["start_ms"] <= int(time.time() * 1000) + 1, open_txn
    assert open_txn["topics"] == {"described": [0, 1]}, open_txn
    epoch = open_txn["producer_epoch"]

    producer.commit_transaction(30)

    def completed():
        d = wire.describe_transactions(["described-txn"])["described-txn"]
        return d if d["state"] == "CompleteCommit" else None

    # The coordinator moves to CompleteCommit once the markers are written, which may
    # follow the EndTxn response.
    done = wait_until(completed, 30, "DescribeTransactions to show the transaction CompleteCommit", interval=0.1)
    assert (done["error"], done["producer_id"], done["producer_epoch"], done["topics"]) == (0, pid, epoch, {}), done
    assert wire.list_transactions()["described-txn"] == (pid, "CompleteCommit")
    assert "described-txn" not in wire.list_transactions(states=["Ongoing"])

    # The log agrees: the records and each partition's commit marker carry that producer
    # id and epoch.
    wire.close()
    broker.stop()
    for partition, count in ((0, 2), (1, 1)):
        batches = [b for seg in segments(broker.partition_dir("described", partition)) for b in read_segment(seg)]
        data = [b for b in batches if not b.attributes & ATTR_CONTROL]
        markers = [b for b in batches if b.attributes & ATTR_CONTROL]
        assert sum(b.record_count for b in data) == count, f"partition {partition}: {data}"
        for b in data + markers:
            assert b.attributes & ATTR_TRANSACTIONAL, f"partition {partition}: batch not transactional: {b}"
            assert (b.producer_id, producer_epoch(b)) == (pid, epoch), f"partition {partition}: {b}"
        assert len(markers) == 1, f"partition {partition}: {len(markers)} control batches"
        assert control_type(markers[0]) == 1, f"partition {partition}: the marker is not a commit"
        assert markers[0].base_offset > max(b.last_offset for b in data)
