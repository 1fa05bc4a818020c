"""Storage errors stop a partition; they are never retried into an acknowledgement.

The broker's data directory sits on a small tmpfs that a filler file nearly fills, so
appends fail with ENOSPC. The partition must then refuse every write with
KAFKA_STORAGE_ERROR, even once space is free again (the failed write may have left the
log in any state, and after a failed fsync the kernel may have dropped the pages), and
a restart must recover it from disk with every acknowledged record in place.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import Broker, ck_consume, ck_producer, create_topic

STORAGE_ERROR = 56  # KAFKA_STORAGE_ERROR
VALUE = b"x" * 32 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {mounted.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def produce_one(producer, topic: str, value: bytes) -> tuple[object, object]:
    """Produces one record and waits for its delivery report: (error, message)."""
    outcome = {}

    def report(err, msg):
        outcome["result"] = (err, msg)

    producer.produce(topic, value=value, partition=0, on_delivery=report)
    producer.flush(30)
    assert "result" in outcome, "no delivery report within 30 s"
    return outcome["result"]


def test_a_full_disk_takes_the_partition_offline_until_a_restart_recovers_it(broker_factory, small_disk, tmp_path):
    broker = Broker(broker_factory.strom_bin, small_disk / "data", tmp_path / "logs")
    broker_factory.brokers.append(broker)
    broker.start()
    create_topic(broker.bootstrap, "filling", 1)
    # Leave about a megabyte free.
    filler = small_disk / "filler"
    free = subprocess.run(["df", "--output=avail", "-B1", str(small_disk)], capture_output=True, text=True)
    available = int(free.stdout.split()[-1])
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, available - (1 << 20)))

    producer = ck_producer(broker.bootstrap, retries=0, **{"message.timeout.ms": 20000})
    acknowledged = []
    failure = None
    for sequence in range(200):  # 200 x 32 KiB is far past the free megabyte
        value = b"%05d:" % sequence + VALUE
        err, msg = produce_one(producer, "filling", value)
        if err is None:
            acknowledged.append((msg.offset(), value))
            continue
        failure = err
        break
    assert failure is not None, "the disk never filled up"
    assert failure.code() == STORAGE_ERROR, f"expected KAFKA_STORAGE_ERROR, got {failure}"
    assert acknowledged, "some records fit before the disk was full"

    # Space again: the partition still refuses, since it never retries a failed write.
    filler.unlink()
    for _ in range(3):
        err, _ = produce_one(producer, "filling", b"after the failure")
        assert err is not None and err.code() == STORAGE_ERROR, f"an offline partition took a write: {err}"
    assert "offline until the broker restarts" in broker.output()
    producer.flush(5)

    # A restart recovers the partition from disk: everything acknowledged is there,
    # in order, and new writes are taken again.
    broker.stop()
    broker.start()
    producer = ck_producer(broker.bootstrap)
    err, msg = produce_one(producer, "filling", b"after the restart")
    assert err is None, f"the recovered partition refused a write: {err}"
    consumed = ck_consume(broker.bootstrap, "filling", [0], expected=msg.offset() + 1)
    by_offset = {rec.offset: rec.value for rec in consumed}
    for offset, value in acknowledged:
        assert by_offset.get(offset) == value, f"acknowledged record at offset {offset} is missing or changed"
    assert by_offset[msg.offset()] == b"after the restart"
    assert not any(v == b"after the failure" for v in by_offset.values()), "a refused write was appended"
    broker.stop()
    broker.assert_verify_ok("after recovering from a full disk")
