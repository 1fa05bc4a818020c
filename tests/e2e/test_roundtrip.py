"""Round trips through Strom with two independent client implementations.

librdkafka (confluent-kafka) and kafka-python each produce and consume 100,000 keyed
records with headers and explicit CreateTime timestamps, for every codec, on 1 and 8
partitions. What comes out must be exactly what went in: same key, value, headers and
timestamp, in produce order per partition, at offsets 0..n-1.
"""

from __future__ import annotations

import random
import time

import pytest

from conftest import (
    KP_CODEC,
    TS_CREATE,
    TS_LOG_APPEND,
    assert_partition_logs_equal,
    by_partition,
    ck_consume,
    ck_produce,
    create_topic,
    kp_consume,
    kp_produce,
    read_segment,
    segments,
    watermarks,
)

N_RECORDS = 100_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def make_records(n: int, seed: int, base_ts: int) -> list[dict]:
    """Keyed records with headers (including a repeated header key, whose order must be
    kept) and distinct CreateTime timestamps. Values mix compressible and random bytes."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        size = rnd.choice((1, 16, 64, 200))
        value = b"value-%07d|" % i + (b"strom" * (size // 5)) + rnd.randbytes(size % 17 + 1)
        out.append(
            {
                "key": b"key-%07d" % i,
                "value": value,
                "headers": (("seq", b"%d" % i), ("dup", b"first"), ("dup", b"second-%d" % (i % 7))),
                "timestamp": base_ts + i,
            }
        )
    return out


def expected_from(produced, records):
    """Delivery reports give partition/offset; content comes from what we sent."""
    from conftest import Rec

    return [
        Rec(p.partition, p.offset, r["key"], r["value"], tuple(r["headers"]), r["timestamp"], TS_CREATE)
        for p, r in zip(produced, records)
    ]


def assert_stored_codec(broker, topic: str, partitions: int, codec: str):
    """Batches are stored as they arrived: the on-disk codec bits are the producer's."""
    seen = 0
    for p in range(partitions):
        for seg in segments(broker.partition_dir(topic, p)):
            for b in read_segment(seg):
                assert b.codec == CODEC_ID[codec], f"{seg}: batch at offset {b.base_offset} stored with codec {b.codec}, produced with {codec}"
                seen += 1
    assert seen > 0, "no batches found on disk"


@pytest.mark.parametrize("partitions", [1, 8])
@pytest.mark.parametrize("codec", CODECS)
def test_confluent_roundtrip(broker, codec, partitions):
    """librdkafka produces 100k records and reads them back unchanged, in order, at contiguous offsets."""
    topic = f"rt-ck-{codec}-{partitions}"
    create_topic(broker.bootstrap, topic, partitions)
    records = make_records(N_RECORDS, seed=partitions * 31 + CODEC_ID[codec], base_ts=int(time.time() * 1000) - 3_600_000)

    produced = ck_produce(
        broker.bootstrap,
        topic,
        records,
        **{
            "compression.type": codec,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 2 * N_RECORDS,
        },
    )
    expected = expected_from(produced, records)
    assert all(p.timestamp == r["timestamp"] for p, r in zip(produced, records))

    consumed = ck_consume(broker.bootstrap, topic, range(partitions), N_RECORDS)
    assert_partition_logs_equal(expected, consumed)
    assert all(r.ts_type == TS_CREATE for r in consumed), "CreateTime topic returned another timestamp type"
    if partitions > 1:
        assert len(by_partition(consumed)) == partitions, "keyed records did not spread over all partitions"

    hw = watermarks(broker.bootstrap, topic, range(partitions))
    counts = {p: len(v) for p, v in by_partition(expected).items()}
    assert hw == {p: (0, counts.get(p, 0)) for p in range(partitions)}, "watermarks disagree with what was produced"
    assert_stored_codec(broker, topic, partitions, codec)


@pytest.mark.parametrize("partitions", [1, 8])
@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_roundtrip(broker, codec, partitions):
    """kafka-python (independent protocol implementation) produces and consumes 100k records unchanged."""
    topic = f"rt-kp-{codec}-{partitions}"
    create_topic(broker.bootstrap, topic, partitions)
    records = make_records(N_RECORDS, seed=1000 + partitions * 31 + CODEC_ID[codec], base_ts=int(time.time() * 1000) - 3_600_000)

    produced = kp_produce(broker.bootstrap, topic, records, compression_type=KP_CODEC[codec])
    expected = expected_from(produced, records)

    consumed = kp_consume(broker.bootstrap, topic, range(partitions), N_RECORDS)
    assert_partition_logs_equal(expected, consumed)
    assert all(r.ts_type == TS_CREATE for r in consumed), "CreateTime topic returned another timestamp type"
    if partitions > 1:
        assert len(by_partition(consumed)) == partitions, "keyed records did not spread over all partitions"
    assert_stored_codec(broker, topic, partitions, codec)


@pytest.mark.parametrize("codec", CODECS)
def test_cross_client(broker, codec):
    """Batches written by one client library are read correctly by the other (10k records each way)."""
    n = 10_000
    base_ts = int(time.time() * 1000) - 600_000
    create_topic(broker.bootstrap, "x-ck", 3)
    create_topic(broker.bootstrap, "x-kp", 3)

    recs_ck = make_records(n, seed=7, base_ts=base_ts)
    prod_ck = ck_produce(broker.bootstrap, "x-ck", recs_ck, **{"compression.type": codec})
    assert_partition_logs_equal(expected_from(prod_ck, recs_ck), kp_consume(broker.bootstrap, "x-ck", range(3), n))

    recs_kp = make_records(n, seed=8, base_ts=base_ts)
    prod_kp = kp_produce(broker.bootstrap, "x-kp", recs_kp, compression_type=KP_CODEC[codec])
    assert_partition_logs_equal(expected_from(prod_kp, recs_kp), ck_consume(broker.bootstrap, "x-kp", range(3), n))


@pytest.mark.parametrize("source", ["topic-config", "broker-default"])
def test_log_append_time(broker_factory, source):
    """With LogAppendTime the broker stamps records with its own clock: consumed timestamps
    lie inside the test's wall-clock window (not the producer's), the type is LogAppendTime
    for both clients, and the produce response carries the same append time."""
    if source == "topic-config":
        broker = broker_factory()
        create_topic(broker.bootstrap, "lat", 2, config={"message.timestamp.type": "LogAppendTime"})
    else:
        broker = broker_factory({"log.message.timestamp.type": "LogAppendTime"})
        create_topic(broker.bootstrap, "lat", 2)

    n = 2000
    ancient = 1_000_000_000_000  # 2001-09-09: nowhere near the test window
    records = make_records(n, seed=3, base_ts=ancient)
    t0 = int(time.time() * 1000)
    produced = ck_produce(broker.bootstrap, "lat", records[: n // 2], **{"compression.type": "lz4"})
    produced += kp_produce(broker.bootstrap, "lat", records[n // 2 :], compression_type=None)
    t1 = int(time.time() * 1000) + 1

    for p in produced[: n // 2]:
        assert p.ts_type == TS_LOG_APPEND, f"delivery report timestamp type {p.ts_type}, expected LogAppendTime"
    for p in produced:
        assert t0 <= p.timestamp <= t1, f"produce response timestamp {p.timestamp} outside [{t0}, {t1}]"
    dr_ts = {(p.partition, p.offset): p.timestamp for p in produced}

    for consume in (ck_consume, kp_consume):
        consumed = consume(broker.bootstrap, "lat", range(2), n)
        assert len(consumed) == n
        for r in consumed:
            assert r.ts_type == TS_LOG_APPEND, f"{consume.__name__}: timestamp type {r.ts_type} at {r.partition}/{r.offset}"
            assert t0 <= r.timestamp <= t1, f"{consume.__name__}: timestamp {r.timestamp} outside [{t0}, {t1}]"
            assert r.timestamp == dr_ts[(r.partition, r.offset)], "consumed append time differs from the produce response"
        assert sorted(r.value for r in consumed) == sorted(x["value"] for x in records)
