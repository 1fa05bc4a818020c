"""Data directories written by earlier releases of single-node Strom keep working.

The fixtures in `fixtures/` are data directories that those releases themselves wrote (see
`fixtures/README.md`): topics `orders` (3 partitions, 30 keyed records) and `profiles`
(compacted, 3 records), and group `billing` with its offsets committed at the end of `orders`.
The current binary starts on each: the old metadata log moves into the controller quorum once,
and topics, configs, records and committed offsets are all still there, also after a restart.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from conftest import ck_consume, ck_consumer, ck_produce, describe_topic_configs, watermarks, wait_for_topic

FIXTURES = Path(__file__).parent / "fixtures"
# Where each partition of `orders` ended when the fixture was written (keys k1..k30 by
# murmur2), which is where group `billing` committed.
ORDERS_ENDS = {0: 10, 1: 8, 2: 12}


def unpack(fixture: str, data_dir: Path):
    with tarfile.open(FIXTURES / fixture) as tar:
        tar.extractall(data_dir.parent, filter="data")
    assert (data_dir / "__cluster_metadata").is_dir(), f"{fixture} holds no data directory"


def check_contents(bootstrap: str, extra_order: bool):
    wait_for_topic(bootstrap, "orders", 3)
    wait_for_topic(bootstrap, "profiles", 1)
    assert describe_topic_configs(bootstrap, "profiles")["cleanup.policy"].value == "compact"

    hw = watermarks(bootstrap, "orders", range(3))
    assert hw == {p: (0, end + int(extra_order and p == 0)) for p, end in ORDERS_ENDS.items()}, f"orders watermarks {hw}"
    total = 30 + int(extra_order)
    orders = ck_consume(bootstrap, "orders", range(3), total)
    values = sorted(r.value for r in orders)
    expected = sorted([b"order-%d" % n for n in range(1, 31)] + ([b"after the upgrade"] if extra_order else []))
    assert values == expected
    for r in orders:
        if r.value.startswith(b"order-"):
            assert r.key == b"k" + r.value[len(b"order-"):], f"record {r} lost its key"

    profiles = ck_consume(bootstrap, "profiles", [0], 3)
    assert [(r.key, r.value) for r in profiles] == [(b"alice", b"v1"), (b"bob", b"v1"), (b"alice", b"v2")]

    from confluent_kafka import TopicPartition

    consumer = ck_consumer(bootstrap, **{"group.id": "billing"})
    try:
        committed = consumer.committed([TopicPartition("orders", p) for p in range(3)], timeout=30)
    finally:
        consumer.close()
    assert {tp.partition: tp.offset for tp in committed} == ORDERS_ENDS, "the group's committed offsets"


@pytest.mark.parametrize("fixture", ["single-node-2026-11-22.tgz", "single-node-2026-12-03.tgz"])
def test_a_single_node_data_directory_from_an_earlier_release_keeps_everything(broker_factory, fixture):
    broker = broker_factory(start=False)
    unpack(fixture, broker.data_dir)
    broker.start()
    metadata = broker.data_dir / "__cluster_metadata"
    assert (metadata / "quorum").is_dir(), "the metadata did not move into the quorum"
    retired = sorted(p.name for p in (metadata / "pre-quorum").iterdir())
    assert retired and all(name.startswith("metadata") for name in retired), retired
    assert not list(metadata.glob("metadata*.log")), "the old metadata log is still where a start would read it"
    check_contents(broker.bootstrap, extra_order=False)

    ck_produce(broker.bootstrap, "orders", [{"key": b"k31", "value": b"after the upgrade", "partition": 0}])
    broker.stop()
    broker.assert_verify_ok("after the upgrade")
    broker.start()
    check_contents(broker.bootstrap, extra_order=True)


def test_an_upgrade_cut_off_while_moving_the_old_metadata_aside_finishes_at_the_next_start(broker_factory):
    """A start that had put the old metadata into the quorum stopped while moving the old
    files aside, leaving one that no longer reads as a log on its own (here: a log file whose
    base offset no snapshot covers). The next start does not refuse the directory: the quorum
    holds the metadata, the move is finished, and everything is still there."""
    broker = broker_factory(start=False)
    unpack("single-node-2026-12-03.tgz", broker.data_dir)
    broker.start()
    broker.stop()
    metadata = broker.data_dir / "__cluster_metadata"
    (moved,) = (metadata / "pre-quorum").iterdir()
    moved.rename(metadata / "metadata-00000000000000000100.log")

    broker.start()
    assert not list(metadata.glob("metadata*.log")), "the move aside was not finished"
    assert (metadata / "pre-quorum" / "metadata-00000000000000000100.log").exists()
    assert any("partly moved aside" in line for line in broker.output().splitlines()), broker.output()
    check_contents(broker.bootstrap, extra_order=False)
