"""Idempotent producers: retries never write a record twice.

A librdkafka producer with enable.idempotence=true keeps sending while the broker is
killed with SIGKILL and restarted twice on the same port. Batches that were written but
whose acknowledgement was lost are retried; the broker recognises them by producer id and
sequence number and answers with the original offset instead of appending them again. The
log must hold every record exactly once, in the order it was produced.
"""

import threading
import time

from conftest import ck_consume, ck_producer, create_topic, wait_until

RECORDS = 100_000


def test_idempotent_producer_writes_each_record_once_across_broker_crashes(broker):
    broker.keep_port()
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "exactly-once-writes", 3)
    producer = ck_producer(bootstrap, **{
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120_000,
        "reconnect.backoff.max.ms": 500,
    })
    delivered = []
    errors = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message.offset())

    def produce_all():
        for i in range(RECORDS):
            key = str(i % 3).encode()  # the same key keeps a sequence in one partition
            while True:
                try:
                    producer.produce("exactly-once-writes", key=key, value=str(i).encode(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(180)

    sender = threading.Thread(target=produce_all)
    sender.start()
    for threshold in (15_000, 35_000, 55_000, 75_000):
        wait_until(lambda t=threshold: len(delivered) >= t, timeout=120, what=f"{threshold} deliveries")
        broker.kill9()
        broker.start()
    sender.join(timeout=300)
    assert not sender.is_alive()
    assert not errors, f"{len(errors)} delivery errors, first {errors[:3]}"
    assert len(delivered) == RECORDS

    records = ck_consume(broker.bootstrap, "exactly-once-writes", range(3), RECORDS, timeout=180)
    values = [int(r.value) for r in records]
    assert len(values) == len(set(values)) == RECORDS, "every record exactly once"
    per_partition = {}
    for record in records:
        per_partition.setdefault(record.partition, []).append(int(record.value))
    for partition, sequence in per_partition.items():
        assert sequence == sorted(sequence), f"partition {partition} is in produce order"
    broker.stop()
    broker.assert_verify_ok("after the crashes")
