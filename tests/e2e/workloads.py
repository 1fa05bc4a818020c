"""Workloads for the cluster tests: clients that write all along while faults happen,
recording every send and its outcome in a checker.History."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Optional

from checker import History
from conftest import ck_producer, wait_until


class StreamingProducer(threading.Thread):
    """An idempotent acks=all producer (confluent-kafka) sending unique values round robin
    over the partitions until finish(), each send and its outcome recorded in the history (an
    error is indeterminate: the record may or may not be stored). Short request timeouts and
    metadata refreshes, so that it finds a new leader while the old one still takes its
    connections (cut off, or paused) rather than only once a connection breaks."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, history: History):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.history = history
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.by_partition: dict = defaultdict(int)
        self.errors: list[str] = []
        self.leftover: Optional[int] = None
        self.exc: Optional[BaseException] = None

    def acked(self, partition: Optional[int] = None) -> int:
        with self.lock:
            return sum(self.by_partition.values()) if partition is None else self.by_partition[partition]

    def wait_acked(self, count: int, what: str, partition: Optional[int] = None, timeout: float = 60):
        """Until `count` records (on `partition`, or on all) are acknowledged in all."""

        def enough():
            if self.exc is not None:
                raise AssertionError(f"the producer crashed: {self.exc!r}")
            return self.acked(partition) >= count

        try:
            wait_until(enough, timeout, what, interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}; {self.acked(partition)} acknowledged, errors {self.errors[:3]}") from None

    def finish(self):
        self.stop_event.set()
        self.join(90)
        assert not self.is_alive(), "the producer did not finish"
        assert self.exc is None, f"the producer crashed: {self.exc!r}"
        assert self.leftover == 0, f"{self.leftover} records without a delivery report"

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            self.exc = e

    def _run(self):
        producer = ck_producer(
            self.bootstrap,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                # Long enough to outlast a failover: librdkafka retries until then.
                "message.timeout.ms": 45000,
                "request.timeout.ms": 5000,
                "topic.metadata.refresh.interval.ms": 1000,
                "reconnect.backoff.max.ms": 500,
            },
        )
        seq = 0
        while not self.stop_event.is_set():
            op = self.history.send("idempotent", b"r%07d" % seq, seq % self.partitions)

            def report(err, msg, op=op):
                if err is None:
                    self.history.ok(op, msg.partition(), msg.offset())
                    with self.lock:
                        self.by_partition[msg.partition()] += 1
                else:
                    self.history.info(op, str(err))
                    with self.lock:
                        self.errors.append(str(err))

            while True:
                try:
                    producer.produce(self.topic, key=b"k%d" % (seq % 7), value=op.value, partition=op.partition, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.05)
            seq += 1
            producer.poll(0.001)  # delivery reports, and a pace two cores can take
        self.leftover = producer.flush(60)
