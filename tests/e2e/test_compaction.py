"""Log compaction against a real broker: what a consumer reads back from a compacted topic.

A compacted topic keeps the latest value of every key; a tombstone (null value) deletes
its key and is itself removed after delete.retention.ms. Offsets never change: the
records that stay keep their offsets, with gaps where others went.

Only sealed segments are cleaned (never the one being written), so each test ends its
writes with a sentinel record after segment.ms has passed: the sentinel rolls the
segment and then sits alone in the active one.
"""

import random
import time

from conftest import ck_consumer, ck_produce, ck_producer, create_topic, wait_until, watermarks

KEYS = 1_000
RECORDS = 100_000
SENTINEL = b"__sentinel__"


def write_history(bootstrap, topic, seed=7, compression="none"):
    """100,000 records over 1,000 keys, ~5% tombstones; returns the expected final state."""
    rng = random.Random(seed)
    producer = ck_producer(
        bootstrap, **{"linger.ms": 20, "batch.num.messages": 2000, "compression.type": compression}
    )
    latest = {}
    records = []
    for i in range(RECORDS):
        key = f"key-{rng.randrange(KEYS):04d}".encode()
        value = None if rng.random() < 0.05 else f"value-{i}".encode()
        records.append({"key": key, "value": value})
        latest[key] = value
    for start in range(0, RECORDS, 10_000):
        ck_produce(bootstrap, topic, records[start:start + 10_000], producer=producer)
    return latest


def create_compacted(bootstrap, topic, **config):
    """A one-partition compacted topic that rolls every second and is cleaned at any dirt."""
    create_topic(bootstrap, topic, 1, config={
        "cleanup.policy": "compact",
        "segment.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        **{name.replace("_", "."): value for name, value in config.items()},
    })


def roll_with_sentinel(bootstrap, topic, segment_ms):
    time.sleep(segment_ms / 1000 + 0.2)
    ck_produce(bootstrap, topic, [{"key": SENTINEL, "value": b"end"}])


def read_all(bootstrap, topic, **conf):
    """Everything up to the high watermark (a compacted topic has fewer records than offsets)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    low, high = watermarks(bootstrap, topic, [0])[0]
    if high == low:
        return []
    consumer = ck_consumer(bootstrap, **conf)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + 120
    try:
        while not out or out[-1].offset() < high - 1:
            assert time.monotonic() < deadline, "reading the compacted topic timed out"
            for message in consumer.consume(10_000, timeout=0.5):
                assert message.error() is None, message.error()
                out.append(message)
    finally:
        consumer.close()
    return out


def compacted_view(messages):
    """(key -> value) as a consumer replaying the topic sees it, and the raw sequence."""
    keys = [m.key() for m in messages if m.key() != SENTINEL]
    return keys, {m.key(): m.value() for m in messages if m.key() != SENTINEL}


def wait_until_compacted(bootstrap, topic, what):
    """Reads the topic until every key appears once, and returns what was read."""

    def compacted():
        messages = read_all(bootstrap, topic)
        keys, _ = compacted_view(messages)
        return messages if len(keys) == len(set(keys)) else None

    return wait_until(compacted, timeout=90, what=what, interval=0.5)


def assert_fully_compacted(messages, latest, tombstones_gone):
    offsets = [m.offset() for m in messages]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offsets increase"
    keys, view = compacted_view(messages)
    assert len(keys) == len(set(keys)), "exactly one record per key after cleaning"
    live = {k: v for k, v in latest.items() if v is not None}
    if tombstones_gone:
        assert view == live, "exactly the latest live value of each key"
    else:
        assert {k: v for k, v in view.items() if v is not None} == live
        assert all(latest[k] is None for k, v in view.items() if v is None)
    assert messages[-1].key() == SENTINEL


def test_compaction_keeps_the_latest_value_of_each_key_and_drops_tombstones(broker_factory):
    broker = broker_factory({"log.cleaner.backoff.ms": "200"})
    bootstrap = broker.bootstrap
    create_compacted(bootstrap, "accounts", segment_bytes="262144", delete_retention_ms="3000")
    latest = write_history(bootstrap, "accounts")
    roll_with_sentinel(bootstrap, "accounts", 1000)

    messages = wait_until_compacted(bootstrap, "accounts", "the cleaner to compact the topic")
    assert_fully_compacted(messages, latest, tombstones_gone=False)

    # Once delete.retention.ms has passed, the next pass drops the tombstones too.
    def tombstones_gone():
        messages = read_all(bootstrap, "accounts")
        return messages if all(m.value() is not None for m in messages) else None

    messages = wait_until(tombstones_gone, timeout=90, what="tombstones to be removed", interval=0.5)
    assert_fully_compacted(messages, latest, tombstones_gone=True)

    broker.restart()
    assert_fully_compacted(read_all(broker.bootstrap, "accounts"), latest, tombstones_gone=True)


def test_compaction_drops_aborted_transactions_and_keeps_committed_ones(broker_factory):
    """Records of an aborted transaction are removed by the cleaner (even a reader that sees
    uncommitted data no longer finds them, and they never stand in for their key); records
    of committed transactions are compacted like any others, tombstones included."""
    broker = broker_factory({"log.cleaner.backoff.ms": "200"})
    bootstrap = broker.bootstrap
    create_compacted(bootstrap, "ledger", delete_retention_ms="1000")
    producer = ck_producer(bootstrap, **{"transactional.id": "ledger-writer", "enable.idempotence": True})
    producer.init_transactions(30)

    def transaction(records, commit):
        producer.begin_transaction()
        for key, value in records:
            producer.produce("ledger", key=key, value=value, partition=0)
        assert producer.flush(30) == 0
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    transaction([(b"k1", b"a1"), (b"k2", b"b1"), (b"k3", b"c1")], commit=True)
    transaction([(b"k1", b"aborted"), (b"k4", b"aborted")], commit=False)
    transaction([(b"k2", None), (b"k3", b"c2")], commit=True)
    roll_with_sentinel(bootstrap, "ledger", 1000)
    expected = [(b"k1", b"a1"), (b"k3", b"c2"), (SENTINEL, b"end")]

    def compacted():
        messages = read_all(bootstrap, "ledger", **{"isolation.level": "read_uncommitted"})
        seen = [(m.key(), m.value()) for m in messages]
        return seen if seen == expected else None

    wait_until(compacted, timeout=90, what="the cleaner to drop aborted and superseded records", interval=0.5)
    broker.restart()
    for isolation in ("read_uncommitted", "read_committed"):
        messages = read_all(broker.bootstrap, "ledger", **{"isolation.level": isolation})
        assert [(m.key(), m.value()) for m in messages] == expected, isolation


def test_cleaner_killed_mid_clean_leaves_old_or_new_segments(broker_factory):
    """A slow cleaner (throttled I/O) is killed with kill -9 while its `.cleaned` files are
    being written; after a restart the log is intact (strom verify) and, once cleaned,
    reads back exactly as it should."""
    broker = broker_factory({"log.cleaner.backoff.ms": "200", "log.cleaner.io.max.bytes.per.second": "300000"})
    bootstrap = broker.bootstrap
    create_compacted(bootstrap, "ledger", segment_bytes="262144", delete_retention_ms="86400000")
    # Compressed batches: the cleaner decompresses, keeps records byte for byte, recompresses.
    latest = write_history(bootstrap, "ledger", seed=11, compression="lz4")
    roll_with_sentinel(bootstrap, "ledger", 1000)
    partition_dir = broker.partition_dir("ledger", 0)
    wait_until(lambda: list(partition_dir.glob("*.cleaned")), timeout=60, what="the cleaner to start writing")
    broker.kill9()
    broker.assert_verify_ok("after killing the cleaner")

    broker.settings["log.cleaner.io.max.bytes.per.second"] = "1000000000"
    broker.start()
    bootstrap = broker.bootstrap
    before = read_all(bootstrap, "ledger")
    keys, view = compacted_view(before)
    assert {k: v for k, v in view.items() if v is not None} == {k: v for k, v in latest.items() if v is not None}, \
        "right after the restart every key reads back as its latest value (nothing lost)"

    messages = wait_until_compacted(bootstrap, "ledger", "the cleaner to finish after the restart")
    assert_fully_compacted(messages, latest, tombstones_gone=False)
    assert watermarks(bootstrap, "ledger", [0])[0][1] == RECORDS + 1, "offsets are never reused"


def test_records_without_a_key_are_refused_by_a_compacted_topic(broker):
    """Kafka refuses a batch with a keyless record on a compacted topic (INVALID_RECORD):
    the producer's delivery report says so, and nothing of the batch is stored."""
    from confluent_kafka import KafkaError

    bootstrap = broker.bootstrap
    create_compacted(bootstrap, "keys-required")
    producer = ck_producer(bootstrap, **{"linger.ms": 0, "retries": 0})
    reports = []
    producer.produce("keys-required", value=b"no key", on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(30) == 0
    assert [err and err.code() for err in reports] == [KafkaError.INVALID_RECORD], reports
    assert watermarks(bootstrap, "keys-required", [0])[0] == (0, 0)
    ck_produce(bootstrap, "keys-required", [{"key": b"k", "value": b"kept"}])
    assert watermarks(bootstrap, "keys-required", [0])[0] == (0, 1)
