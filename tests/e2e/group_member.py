"""One consumer-group member as its own process, so a test can kill it with SIGKILL.

Usage: group_member.py BOOTSTRAP GROUP TOPIC OUTFILE [--strategy S] [--instance ID]
       [--session-timeout-ms N]

It subscribes, and for every record writes `record <partition> <offset> <value>` to OUTFILE
(flushed) before committing synchronously: commit after processing, so a record is
processed at least once. Assignment changes are written as `assign`/`revoke` lines with
CLOCK_MONOTONIC nanoseconds, comparable across processes. SIGTERM closes the consumer
cleanly (it leaves the group).
"""

import argparse
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("out")
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--instance")
    parser.add_argument("--session-timeout-ms", default="6000")
    parser.add_argument("--protocol", default="classic", help="classic, or consumer for KIP-848")
    args = parser.parse_args()

    out = open(args.out, "a", buffering=1)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def log(kind, partitions):
        parts = " ".join(str(p.partition) for p in partitions)
        out.write(f"{kind} {time.monotonic_ns()} {parts}\n")
        out.flush()

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if args.protocol == "consumer":
        # KIP-848: the broker owns timeouts and assignment; the client picks a server assignor.
        conf["group.protocol"] = "consumer"
        conf["group.remote.assignor"] = args.strategy
    else:
        conf["session.timeout.ms"] = int(args.session_timeout_ms)
        conf["heartbeat.interval.ms"] = 500
        conf["partition.assignment.strategy"] = args.strategy
    if args.instance:
        conf["group.instance.id"] = args.instance
    consumer = Consumer(conf)
    consumer.subscribe(
        [args.topic],
        on_assign=lambda c, ps: log("assign", ps),
        on_revoke=lambda c, ps: log("revoke", ps),
        on_lost=lambda c, ps: log("revoke", ps),
    )
    out.write(f"started {time.monotonic_ns()}\n")
    while not stopping:
        messages = consumer.consume(500, timeout=0.2)
        processed = False
        for message in messages:
            if message.error():
                out.write(f"error {message.error()}\n")
                continue
            out.write(f"record {message.partition()} {message.offset()} {message.value().decode()}\n")
            processed = True
        if processed:
            out.flush()
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as error:
                # A commit refused during a rebalance: the records are redelivered.
                out.write(f"commit-failed {error}\n")
    consumer.close()
    out.write(f"closed {time.monotonic_ns()}\n")
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
