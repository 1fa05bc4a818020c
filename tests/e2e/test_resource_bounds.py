"""Bounds a broker keeps whatever its clients do.

- Open files stay under `log.max.open.files` while many partitions, each with several
  segments, are written and read back (past the fetch's share of the cap, records are copied
  instead of spliced), and every record still reads back as written.
"""

from __future__ import annotations

import os
import threading

from conftest import assert_partition_logs_equal, ck_consume, ck_produce, create_topic, segments

CAP = 64
PARTITIONS = 200
# Besides what an idle broker holds (measured at the start: standard streams, the listener,
# the metadata log, the runtime's descriptors), this test's client connections.
CONNECTIONS = 12


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class FdWatcher:
    """Samples the broker's open descriptors until stopped; keeps the highest count."""

    def __init__(self, pid: int):
        self.pid = pid
        self.highest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.highest = max(self.highest, open_files(self.pid))
            except FileNotFoundError:
                return
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_open_files_stay_under_the_cap_across_many_partitions(broker_factory):
    srv = broker_factory({"log.max.open.files": str(CAP)})
    # One fetch over 200 partitions needs more spliced files than the cap's share: the rest
    # are copied, which the broker says once.
    srv.may_log = ("copied into memory",)
    idle = open_files(srv.proc.pid)
    # Small segments, so each partition has several (a log and an index file each).
    create_topic(srv.bootstrap, "wide", partitions=PARTITIONS, config={"segment.bytes": "10000"})
    produced, records = [], 0
    with FdWatcher(srv.proc.pid) as watcher:
        # Rounds of one batch per partition (each flushed), so segments roll between them.
        for round in range(4):
            batch = [
                {"partition": p, "key": f"k{round}-{p}-{i}".encode(), "value": os.urandom(1000)}
                for p in range(PARTITIONS)
                for i in range(8)
            ]
            produced += ck_produce(srv.bootstrap, "wide", batch)
            records += len(batch)
        segment_counts = [len(segments(srv.partition_dir("wide", p))) for p in range(PARTITIONS)]
        assert min(segment_counts) >= 2, f"every partition should have rolled a segment: {segment_counts[:10]}"
        consumed = ck_consume(srv.bootstrap, "wide", range(PARTITIONS), expected=records)
    assert watcher.highest <= idle + CAP + CONNECTIONS, (
        f"{watcher.highest} descriptors open ({idle} when idle) with log.max.open.files={CAP} "
        f"({PARTITIONS} partitions, {sum(segment_counts)} segments)\n{srv.output()}"
    )
    assert watcher.highest - idle > CAP // 2, "the cache was hardly used: the test did not exercise the cap"
    assert "copied into memory" in srv.output(10_000), "the fetch did not go past the splice budget"
    assert_partition_logs_equal(produced, consumed, check_ts=False)
