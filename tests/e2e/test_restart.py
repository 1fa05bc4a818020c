"""Restarts keep everything: topics, partition counts, per-topic configs and records.

Checked after a clean restart (SIGTERM) and after a crash restart (kill -9), on the
same data directory.
"""

from __future__ import annotations

import random
import time

from conftest import (
    TS_CREATE,
    TS_LOG_APPEND,
    by_partition,
    ck_admin,
    ck_consume,
    ck_produce,
    create_topic,
    describe_topic_configs,
    read_segment,
    segments,
    topic_metadata,
    watermarks,
)

TOPICS = {
    # name: (partitions, config overrides)
    "keep-logappend": (3, {"retention.ms": "3600000", "max.message.bytes": "2000000", "message.timestamp.type": "LogAppendTime"}),
    "keep-segments": (5, {"segment.bytes": "1048576", "retention.bytes": "1073741824", "compression.type": "producer"}),
    "keep-plain": (1, {}),
}



def produce_round(bootstrap: str, round_no: int) -> dict[str, list]:
    """~5 MB of incompressible values per round into keep-segments (5 partitions), so its
    partitions roll over their 1 MiB segments."""
    out = {}
    base_ts = int(time.time() * 1000) - 60_000  # recent: 7-day default retention must not delete them
    for topic, (partitions, _) in TOPICS.items():
        n = 10000 if topic == "keep-segments" else 500
        rnd = random.Random(round_no)
        recs = [
            {"key": b"%s-%d-%d" % (topic.encode(), round_no, i), "value": (b"r%d-%d|" % (round_no, i)) + rnd.randbytes(480), "timestamp": base_ts + i}
            for i in range(n)
        ]
        out[topic] = ck_produce(bootstrap, topic, recs, **{"compression.type": "none" if round_no % 2 == 0 else "lz4"})
    return out


def check_everything(broker, produced: dict[str, list], when: str):
    from confluent_kafka.admin import ConfigSource

    md = topic_metadata(broker.bootstrap)
    for topic, (partitions, overrides) in TOPICS.items():
        t = md.topics.get(topic)
        assert t is not None and t.error is None, f"{when}: topic {topic} missing from metadata"
        assert len(t.partitions) == partitions, f"{when}: {topic} has {len(t.partitions)} partitions, created with {partitions}"

        configs = describe_topic_configs(broker.bootstrap, topic)
        for name, value in overrides.items():
            entry = configs.get(name)
            assert entry is not None, f"{when}: {topic} config {name} missing from DescribeConfigs"
            assert entry.value == value, f"{when}: {topic} {name}={entry.value!r}, set to {value!r}"
            assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value or entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG, (
                f"{when}: {topic} {name} has source {entry.source}, expected DYNAMIC_TOPIC_CONFIG"
            )
        for name, entry in configs.items():
            if name not in overrides:
                src = getattr(entry.source, "value", entry.source)
                assert src != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{when}: {topic} reports {name}={entry.value!r} as a topic override"

        expected = [r for recs in produced[topic] for r in recs]
        hw = watermarks(broker.bootstrap, topic, range(partitions))
        counts = {p: len(v) for p, v in by_partition(expected).items()}
        assert hw == {p: (0, counts.get(p, 0)) for p in range(partitions)}, f"{when}: {topic} watermarks {hw}, produced {counts}"
        consumed = ck_consume(broker.bootstrap, topic, range(partitions), len(expected))
        want = {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in expected}
        got = {(r.partition, r.offset): (r.key, r.value, r.timestamp) for r in consumed}
        assert got == want, f"{when}: {topic} records differ after restart"
        want_type = TS_LOG_APPEND if overrides.get("message.timestamp.type") == "LogAppendTime" else TS_CREATE
        assert {r.ts_type for r in consumed} == {want_type}, f"{when}: {topic} timestamp types {({r.ts_type for r in consumed})}"


def test_topics_configs_and_records_survive_restarts(broker):
    """Create topics with overrides through AdminClient, produce, then restart cleanly and
    after kill -9: topics, partition counts, overrides (source DYNAMIC_TOPIC_CONFIG) and
    every acknowledged record are still there, and writes keep appending after each restart."""
    for topic, (partitions, overrides) in TOPICS.items():
        create_topic(broker.bootstrap, topic, partitions, config=overrides)

    produced: dict[str, list] = {t: [] for t in TOPICS}

    def produce(round_no):
        for t, recs in produce_round(broker.bootstrap, round_no).items():
            produced[t].append(recs)

    produce(0)
    check_everything(broker, produced, "before any restart")

    broker.restart()
    check_everything(broker, produced, "after SIGTERM restart")
    produce(1)
    assert len(segments(broker.partition_dir("keep-segments", 0))) >= 2, "segment.bytes=1MiB did not roll a segment"

    broker.crash_restart()
    check_everything(broker, produced, "after kill -9 restart")
    produce(2)

    broker.crash_restart()
    check_everything(broker, produced, "after second kill -9 restart")
    broker.stop()
    broker.assert_verify_ok("after the restarts")
    for p in range(TOPICS["keep-segments"][0]):
        check_segment_layout(broker.partition_dir("keep-segments", p))


def check_segment_layout(partition_dir):
    """Kafka's layout: each segment is <20-digit base offset>.log with .index and .timeindex
    beside it; the name is the offset of its first batch, and segments continue each other."""
    segs = segments(partition_dir)
    assert len(segs) >= 2, f"{partition_dir}: expected rolled segments, found {[s.name for s in segs]}"
    expected_base = 0
    for seg in segs:
        assert len(seg.stem) == 20 and seg.stem.isdigit(), f"segment name {seg.name} is not a 20-digit offset"
        for ext in (".index", ".timeindex"):
            assert seg.with_suffix(ext).exists(), f"{seg.name} has no {ext} file"
        assert int(seg.stem) == expected_base, f"{seg.name}: expected the segment after offset {expected_base - 1} to be named {expected_base:020d}"
        batches = read_segment(seg)
        if batches:  # (an empty active segment has no batches yet)
            assert batches[0].base_offset == expected_base, f"{seg.name}: first batch at offset {batches[0].base_offset}"
            expected_base = batches[-1].last_offset + 1


def test_deleted_topic_stays_deleted_after_restart(broker):
    """A topic deleted before a restart does not come back from disk or metadata."""
    create_topic(broker.bootstrap, "doomed", 2)
    create_topic(broker.bootstrap, "survivor", 1)
    ck_produce(broker.bootstrap, "doomed", [{"value": b"x"}] * 10)
    ck_produce(broker.bootstrap, "survivor", [{"value": b"y"}] * 10)
    admin = ck_admin(broker.bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    admin.delete_topics(["doomed"], operation_timeout=30)["doomed"].result(30)

    from conftest import wait_until

    wait_until(lambda: "doomed" not in topic_metadata(broker.bootstrap).topics, 30, "doomed to leave metadata")
    broker.restart()
    topics = topic_metadata(broker.bootstrap).topics
    assert "doomed" not in topics, "deleted topic is back after restart"
    assert "survivor" in topics
    assert watermarks(broker.bootstrap, "survivor", [0]) == {0: (0, 10)}
