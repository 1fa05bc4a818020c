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
    """Batches are stored as they arrived: every on-disk batch carries the producer's codec.

    Both clients send a batch uncompressed when compressing it would not make it smaller
    (e.g. a one-record batch), so codec 0 is allowed too, but most records must sit in
    batches with the producer's codec: the broker neither recompressed nor decompressed them.
    """
    in_codec = total = 0
    for p in range(partitions):
        for seg in segments(broker.partition_dir(topic, p)):
            for b in read_segment(seg):
                assert b.codec in (CODEC_ID[codec], 0), f"{seg}: batch at offset {b.base_offset} stored with codec {b.codec}, produced with {codec}"
                total += b.record_count
                in_codec += b.record_count if b.codec == CODEC_ID[codec] else 0
    assert total == N_RECORDS, f"{total} records in on-disk batches, produced {N_RECORDS}"
    assert in_codec > total // 2, f"only {in_codec} of {total} records stored in {codec} batches"


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


@pytest.mark.parametrize("stored,produced", [("zstd", "none"), ("uncompressed", "lz4"), ("gzip", "snappy")])
def test_topic_compression_type_recompresses(broker, stored, produced):
    """A topic's compression.type names the codec its batches are stored in: the broker
    recompresses batches that arrive in another codec, and consumers of both client
    libraries read exactly what was produced."""
    topic = f"stored-{stored}"
    create_topic(broker.bootstrap, topic, 1, config={"compression.type": stored})
    records = make_records(20_000, seed=CODEC_ID[produced], base_ts=int(time.time() * 1000) - 60_000)
    sent = ck_produce(
        broker.bootstrap,
        topic,
        records,
        **{"compression.type": produced, "linger.ms": 20, "batch.num.messages": 5000, "enable.idempotence": True},
    )
    expected = expected_from(sent, records)
    assert_partition_logs_equal(expected, ck_consume(broker.bootstrap, topic, [0], len(records)))
    assert_partition_logs_equal(expected, kp_consume(broker.bootstrap, topic, [0], len(records)))
    want = 0 if stored == "uncompressed" else CODEC_ID[stored]
    stored_codecs = {b.codec for seg in segments(broker.partition_dir(topic, 0)) for b in read_segment(seg)}
    assert stored_codecs == {want}, f"batches stored with codecs {stored_codecs}, the topic says {stored}"


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


EDGE_RECORDS = [
    {"key": None, "value": b"no key"},
    {"key": b"tombstone", "value": None},
    {"key": b"", "value": b""},
    {"key": b"hdrs", "value": b"odd headers", "headers": (("empty", b""), ("null", None), ("\u00fcn\u00efc\u00f6d\u00e9", b"\x00\xff\x00"))},
    {"key": b"binary\x00key", "value": bytes(range(256))},
    {"key": b"big", "value": random.Random(11).randbytes(512 * 1024)},
    {"key": b"last", "value": b"after the big one"},
]


@pytest.mark.parametrize("producer", ["confluent", "kafka-python"])
def test_edge_case_records(broker, producer):
    """Null keys, null values (tombstones), empty keys/values, empty and null header values,
    non-ASCII header keys, binary data and a 512 KiB value survive the trip, for both readers."""
    topic = f"edge-{producer}"
    create_topic(broker.bootstrap, topic, 1)
    records = [dict(r, timestamp=int(time.time() * 1000)) for r in EDGE_RECORDS]
    if producer == "kafka-python":
        # kafka-python's send() only accepts bytes header values (it can read null ones)
        records = [dict(r, headers=tuple(h for h in r["headers"] if h[1] is not None)) if "headers" in r else r for r in records]
    if producer == "confluent":
        produced = ck_produce(broker.bootstrap, topic, records, **{"compression.type": "zstd"})
    else:
        produced = kp_produce(broker.bootstrap, topic, records, compression_type="zstd")
    assert [p.offset for p in produced] == list(range(len(records)))
    want = [(r["key"], r["value"], tuple(r.get("headers", ()))) for r in records]
    for consume in (ck_consume, kp_consume):
        got = consume(broker.bootstrap, topic, [0], len(records))
        assert [(r.key, r.value, r.headers) for r in got] == want, f"{consume.__name__} read different records"


def test_fetch_from_any_offset(broker):
    """A consumer starting at any offset, including one in the middle of a compressed batch,
    gets exactly that record first (the broker returns the batch containing the offset)."""
    topic = "seek"
    create_topic(broker.bootstrap, topic, 1)
    records = make_records(3000, seed=5, base_ts=int(time.time() * 1000) - 60_000)
    ck_produce(broker.bootstrap, topic, records, **{"compression.type": "gzip", "batch.num.messages": 250, "linger.ms": 100})
    on_disk = [b for seg in segments(broker.partition_dir(topic, 0)) for b in read_segment(seg)]
    assert len(on_disk) > 3, "expected several batches"
    mids = [b.base_offset + b.record_count // 2 for b in on_disk[:3]]
    starts = sorted({0, 1, on_disk[1].base_offset, on_disk[1].base_offset - 1, 2999, *mids, *random.Random(2).sample(range(3000), 5)})

    from kafka import TopicPartition as KTP

    kc = kp_consumer_for_seek(broker)
    try:
        for s in starts:
            first = ck_consume(broker.bootstrap, topic, [0], 1, start_offset=s)[0]
            assert (first.offset, first.value) == (s, records[s]["value"]), f"confluent from offset {s} got offset {first.offset}"
            tp = KTP(topic, 0)
            kc.seek(tp, s)
            got = []
            deadline = time.time() + 30
            while not got and time.time() < deadline:
                got = kc.poll(timeout_ms=500, max_records=1).get(tp, [])
            assert got, f"kafka-python read nothing from offset {s}"
            assert (got[0].offset, got[0].value) == (s, records[s]["value"]), f"kafka-python from offset {s} got offset {got[0].offset}"
    finally:
        kc.close()


def kp_consumer_for_seek(broker):
    from kafka import TopicPartition as KTP

    from conftest import kp_consumer

    c = kp_consumer(broker.bootstrap)
    c.assign([KTP("seek", 0)])
    return c


def test_batch_larger_than_fetch_limits_is_still_returned(broker):
    """A batch bigger than the consumer's fetch size limits is still returned whole (KIP-74),
    so a consumer with tiny limits makes progress instead of stalling."""
    topic = "big-batch"
    create_topic(broker.bootstrap, topic, 1)
    big = random.Random(3).randbytes(900_000)  # under the producer's 1 MB message.max.bytes
    ck_produce(broker.bootstrap, topic, [{"key": b"big", "value": big}, {"key": b"small", "value": b"s"}], **{"linger.ms": 0, "compression.type": "none"})

    got = ck_consume(broker.bootstrap, topic, [0], 2, **{"fetch.max.bytes": 1024, "max.partition.fetch.bytes": 1024, "message.max.bytes": 1000})
    assert [(r.key, r.value) for r in got] == [(b"big", big), (b"small", b"s")]
    got = kp_consume(broker.bootstrap, topic, [0], 2, fetch_max_bytes=1024, max_partition_fetch_bytes=1024)
    assert [(r.key, r.value) for r in got] == [(b"big", big), (b"small", b"s")]


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks_levels(broker, acks):
    """Every acks level stores every record once and in order (acks=0 gets no response, so
    the records are checked by reading them back). librdkafka writes half the records;
    kafka-python the other half for acks=1/all. kafka-python 2.3.3 is left out of acks=0:
    it never writes an acks=0 Produce request to the socket (seen with a TCP proxy), so
    there is nothing for the broker to store."""
    topic = f"acks-{acks}"
    create_topic(broker.bootstrap, topic, 2)
    n = 5000
    records = [{"key": b"k%d" % i, "value": b"acks %s record %d" % (str(acks).encode(), i), "partition": i % 2} for i in range(n)]
    if acks == 0:
        ck_produce(broker.bootstrap, topic, records, acks=0)
    else:
        ck_produce(broker.bootstrap, topic, records[: n // 2], acks=acks)
        kp_produce(broker.bootstrap, topic, records[n // 2 :], acks=acks)
    got = ck_consume(broker.bootstrap, topic, range(2), n)
    assert len(got) == n
    for p, recs in by_partition(got).items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {p}: offsets not contiguous"
        assert [r.value for r in recs] == [r["value"] for r in records if r["partition"] == p], f"partition {p}: records differ or out of order"
    assert watermarks(broker.bootstrap, topic, range(2)) == {0: (0, n // 2), 1: (0, n // 2)}


def test_out_of_range_fetch_resets_to_earliest(broker):
    """A consumer asking for an offset past the end gets OFFSET_OUT_OF_RANGE from the broker
    and, with auto.offset.reset=earliest, starts over at offset 0 (both clients)."""
    create_topic(broker.bootstrap, "oor", 1)
    ck_produce(broker.bootstrap, "oor", [{"value": b"v%d" % i} for i in range(10)])
    first = ck_consume(broker.bootstrap, "oor", [0], 1, start_offset=1_000_000)[0]
    assert (first.offset, first.value) == (0, b"v0")

    from kafka import TopicPartition as KTP

    from conftest import kp_consumer

    c = kp_consumer(broker.bootstrap)
    try:
        tp = KTP("oor", 0)
        c.assign([tp])
        c.seek(tp, 1_000_000)
        got = []
        deadline = time.time() + 30
        while not got and time.time() < deadline:
            got = c.poll(timeout_ms=500, max_records=1).get(tp, [])
        assert got and (got[0].offset, got[0].value) == (0, b"v0"), f"kafka-python after reset: {got}"
    finally:
        c.close()
