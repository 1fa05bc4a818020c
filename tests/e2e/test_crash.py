"""Crash safety: an acknowledged write is never lost, and nothing is written twice.

Producers use acks=all and never retry (retries=0), so without idempotence every
record reaches the log at most once from the client side; anything the broker
acknowledged must be there after kill -9 and restart, at the offset it acknowledged.
Records whose delivery failed (in flight at the crash) may or may not be there.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from conftest import (
    by_partition,
    ck_consume,
    ck_produce,
    create_topic,
    read_segment,
    segments,
    wait_until,
    watermarks,
)

PARTITIONS = 6
N_PRODUCERS = 4


class SeqProducer(threading.Thread):
    """Writes values 'P<producer>:<seq>:<padding>' with seq = 0,1,2,... round-robin over partitions."""

    def __init__(self, producer_id: int, bootstrap: str, topic: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.producer_id = producer_id
        self.bootstrap = bootstrap
        self.topic = topic
        self.stop_event = stop
        self.lock = threading.Lock()
        self.acked: dict[int, tuple[int, int]] = {}  # seq -> (partition, offset)
        self.failed: dict[int, str] = {}  # seq -> error
        self.attempted = 0
        self.leftover = None
        self.exc: BaseException | None = None

    def n_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.exc = e

    def _run(self):
        from confluent_kafka import Producer

        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": False,
                "retries": 0,  # nothing is re-sent across the crash
                "linger.ms": 2,
                "queue.buffering.max.messages": 20000,
                "message.timeout.ms": 10000,
                "request.timeout.ms": 5000,
                "reconnect.backoff.max.ms": 500,
            }
        )

        def on_delivery(err, msg):
            seq = int(msg.value().split(b":")[1])
            with self.lock:
                if err is None:
                    self.acked[seq] = (msg.partition(), msg.offset())
                else:
                    self.failed[seq] = str(err)

        seq = 0
        while not self.stop_event.is_set():
            value = b"P%d:%d:" % (self.producer_id, seq) + b"x" * (seq % 50)
            try:
                p.produce(self.topic, value=value, key=b"P%d" % self.producer_id, partition=seq % PARTITIONS, on_delivery=on_delivery)
            except BufferError:
                p.poll(0.05)
                continue
            seq += 1
            self.attempted = seq
            p.poll(0)
        self.leftover = p.flush(60)


def parse_value(v: bytes) -> tuple[int, int]:
    pid, seq, _ = v.split(b":", 2)
    assert pid.startswith(b"P"), v
    return int(pid[1:]), int(seq)


def run_producers_and_crash(broker, topic: str, id_base: int, kill_after_acks: int) -> list[SeqProducer]:
    stop = threading.Event()
    producers = [SeqProducer(id_base + i, broker.bootstrap, topic, stop) for i in range(N_PRODUCERS)]
    for pr in producers:
        pr.start()
    try:
        wait_until(
            lambda: all(pr.n_acked() > 0 for pr in producers) and sum(pr.n_acked() for pr in producers) >= kill_after_acks
            or any(pr.exc for pr in producers),
            120,
            f"{kill_after_acks} acknowledged records",
        )
        for pr in producers:
            assert pr.exc is None, f"producer {pr.producer_id} crashed: {pr.exc!r}"
        broker.kill9()  # mid-load: the producers are still sending
    finally:
        stop.set()
        for pr in producers:
            pr.join(120)
    for pr in producers:
        assert not pr.is_alive(), f"producer {pr.producer_id} did not finish"
        assert pr.exc is None, f"producer {pr.producer_id} crashed: {pr.exc!r}"
        assert pr.leftover == 0, f"producer {pr.producer_id}: {pr.leftover} messages without a delivery report"
        assert len(pr.acked) + len(pr.failed) == pr.attempted, (
            f"producer {pr.producer_id}: {pr.attempted} sent, {len(pr.acked)} acked + {len(pr.failed)} failed"
        )
    return producers


def check_log_against_acks(broker, topic: str, producers: list[SeqProducer]):
    """Read every partition to its high watermark and compare with what producers were told."""
    hw = watermarks(broker.bootstrap, topic, range(PARTITIONS))
    for p, (lo, hi) in hw.items():
        assert lo == 0, f"partition {p}: log start offset {lo} after recovery"
    total = sum(hi for _, hi in hw.values())
    consumed = ck_consume(broker.bootstrap, topic, range(PARTITIONS), total)

    by_prod = {pr.producer_id: pr for pr in producers}
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    last_seq: dict[tuple[int, int], int] = {}
    for p, recs in by_partition(consumed).items():
        assert [r.offset for r in recs] == list(range(hw[p][1])), f"partition {p}: offsets are not 0..{hw[p][1] - 1}"
        for r in recs:
            pid, seq = parse_value(r.value)
            assert pid in by_prod, f"record from unknown producer at {p}/{r.offset}: {r.value!r}"
            assert seq < by_prod[pid].attempted, f"record never sent at {p}/{r.offset}: {r.value!r}"
            assert seq % PARTITIONS == p, f"record {r.value!r} in partition {p}, was sent to {seq % PARTITIONS}"
            assert (pid, seq) not in seen, f"record P{pid}:{seq} appears twice: at {seen[(pid, seq)]} and {(p, r.offset)}"
            seen[(pid, seq)] = (p, r.offset)
            prev = last_seq.get((pid, p), -1)
            assert seq > prev, f"partition {p}: producer {pid} seq {seq} at offset {r.offset} after seq {prev}"
            last_seq[(pid, p)] = seq

    lost = []
    moved = []
    for pr in producers:
        for seq, where in pr.acked.items():
            got = seen.get((pr.producer_id, seq))
            if got is None:
                lost.append((pr.producer_id, seq, where))
            elif got != where:
                moved.append((pr.producer_id, seq, where, got))
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. (producer, seq, (partition, offset)): {lost[:10]}"
    assert not moved, f"{len(moved)} acknowledged records at another offset than acked: {moved[:10]}"
    return hw, len(seen)


def test_kill9_under_load_loses_no_acknowledged_record(broker):
    """Four acks=all producers write to 6 partitions; the broker is killed with SIGKILL
    mid-load, twice. After each crash: `strom verify` finds no damage (a partition may end
    in a write the kill cut off, never acknowledged), and after restart every
    acknowledged record is present exactly once at its acknowledged offset, no record is
    duplicated, each producer's sequence numbers increase within a partition, and new
    writes continue at the high watermark. A final clean stop leaves a log that verifies."""
    topic = "crash"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    all_producers: list[SeqProducer] = []
    for round_no in range(2):
        all_producers += run_producers_and_crash(broker, topic, id_base=round_no * 10, kill_after_acks=20000)
        acked = sum(len(pr.acked) for pr in all_producers)
        failed = sum(len(pr.failed) for pr in all_producers)
        print(f"round {round_no}: {acked} acked, {failed} failed so far")

        broker.assert_verify_ok(f"right after kill -9 (round {round_no})", after_crash=True)
        broker.start()
        hw, n = check_log_against_acks(broker, topic, all_producers)
        assert n >= acked

    # Writes after recovery continue exactly at the high watermark.
    more = [{"value": b"P99:%d:after" % p, "partition": p} for p in range(PARTITIONS)]
    delivered = ck_produce(broker.bootstrap, topic, more)
    for d in delivered:
        assert d.offset == hw[d.partition][1], f"partition {d.partition}: new record at {d.offset}, high watermark was {hw[d.partition][1]}"

    broker.stop()
    broker.assert_verify_ok("after restart and clean stop")


# --------------------------------------------------------------------------------------
# Torn writes
# --------------------------------------------------------------------------------------


def produce_in_batches(bootstrap: str, topic: str, partitions: int, rounds: int, per_round: int):
    """Several separately flushed rounds (so several batches), alternating codecs."""
    produced = []
    base_ts = int(time.time() * 1000) - 60_000  # recent: 7-day default retention must not delete them
    for rnd in range(rounds):
        codec = ["none", "zstd", "gzip"][rnd % 3]
        recs = [
            {"key": b"k%d-%d" % (rnd, i), "value": b"round %d record %d " % (rnd, i) + b"." * (i % 40), "partition": i % partitions, "timestamp": base_ts + rnd * 1000 + i}
            for i in range(per_round)
        ]
        produced += ck_produce(bootstrap, topic, recs, **{"compression.type": codec})
    return produced


@pytest.mark.parametrize("damage", ["random-garbage", "partial-last-batch", "last-batch-header-only"])
def test_torn_tail_is_detected_and_repaired(broker, damage):
    """Bytes appended to the active segment of a stopped broker (what a crash mid-write
    leaves) are reported by `strom verify`; the broker truncates them on start, after
    which verify passes, every acknowledged record reads back unchanged, and new writes
    continue at the next offset."""
    topic = "torn"
    create_topic(broker.bootstrap, topic, 2)
    produced = produce_in_batches(broker.bootstrap, topic, 2, rounds=5, per_round=400)
    broker.stop()
    broker.assert_verify_ok("before any damage")

    seg = segments(broker.partition_dir(topic, 0))[-1]
    batches = read_segment(seg)
    assert len(batches) >= 5, f"expected one batch per flushed round in {seg}, found {len(batches)}"
    last = batches[-1].raw
    tail = {
        "random-garbage": random.Random(20240601).randbytes(1000),
        "partial-last-batch": last[: len(last) // 2],
        "last-batch-header-only": last[:61],
    }[damage]
    with open(seg, "ab") as f:
        f.write(tail)

    res = broker.verify()
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"strom verify passed a segment with a torn tail ({damage}):\n{out}"
    assert f"{topic}-0" in out or seg.name in out, f"strom verify did not say which partition/segment is damaged:\n{out}"

    broker.start()
    hw = watermarks(broker.bootstrap, topic, range(2))
    counts = {p: len(v) for p, v in by_partition(produced).items()}
    assert hw == {p: (0, counts[p]) for p in range(2)}, f"watermarks after repair {hw}, acknowledged {counts}"
    consumed = ck_consume(broker.bootstrap, topic, range(2), len(produced))
    got = {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in consumed}
    assert got == {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in produced}

    new = ck_produce(broker.bootstrap, topic, [{"value": b"after repair", "partition": 0}])
    assert new[0].offset == counts[0], f"first write after repair at offset {new[0].offset}, expected {counts[0]}"
    again = ck_consume(broker.bootstrap, topic, [0], 1, start_offset=counts[0])
    assert again[0].value == b"after repair"

    broker.stop()
    broker.assert_verify_ok(f"after the broker repaired the {damage} tail")
    repaired = read_segments_all(broker.partition_dir(topic, 0))
    assert repaired[-1].last_offset == counts[0], "last batch on disk is not the record written after repair"
    assert sum(b.record_count for b in repaired) == counts[0] + 1


def read_segments_all(partition_dir):
    out = []
    for s in segments(partition_dir):
        out += read_segment(s)
    return out
