"""A consume-transform-produce loop with Kafka transactions, as its own process, so a test
can kill it with SIGKILL at any point and start it again.

Usage: txn_transformer.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID
       [--seed N] [--batch N] [--abort-ratio F] [--expected N] [--stall-after N]
       [--transaction-timeout-ms N]

A read_committed consumer (group GROUP, offsets never auto-committed) is assigned every
partition of INPUT at the group's committed offsets. Each transaction takes one batch of
input records and writes, for every record, one record to OUTPUT: same partition, same key,
value b"out:" + input value. The consumer's positions go into the same transaction
(send_offsets_to_transaction), so the output and the input offsets are committed together
or not at all.

A seeded fifth of the transactions (--abort-ratio) are aborted on purpose after their
records were delivered and their offsets sent: the consumer then rewinds to the offsets
the group has committed (asked of the broker, and checked against the offsets this process
last committed) and the records are processed again in a later transaction.

stdout, one line per event, flushed:
    start <committed>               offsets fetched; <committed> input records are done
    committed <committed> <n>       a transaction with n records committed
    aborted <committed> <n>         a transaction with n delivered records aborted on purpose
    aborted-on-error <n> <error>    a transaction aborted because an operation failed
    stalled <committed> <n>         --stall-after: a transaction is left open (n records
                                    delivered, offsets sent) and the process waits forever
    done <committed>                every expected input record is committed; exit 0
    fatal <error>                   exit 2
    offsets-mismatch <details>      the group's committed offsets are not the ones this
                                    process committed last; exit 3

<committed> is the sum over the input partitions of the group's committed offset, which is
the number of input records processed when the input has offsets 0..n-1 (no transactions
on the input). The loop ends when it reaches --expected, or without --expected the sum of
the input's end offsets (last stable offsets) at start.
"""

import argparse
import os
import random
import sys
import threading
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)


def say(*words):
    print(*words, flush=True)


class Fatal(Exception):
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("group")
    parser.add_argument("transactional_id")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--abort-ratio", type=float, default=0.2)
    parser.add_argument("--expected", type=int)
    parser.add_argument("--stall-after", type=int)
    parser.add_argument("--transaction-timeout-ms", type=int, default=30000)
    args = parser.parse_args()
    try:
        return Transformer(args).run()
    except Fatal as error:
        say("fatal", error)
        return 2


class Transformer:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.producer = Producer(
            {
                "bootstrap.servers": args.bootstrap,
                "transactional.id": args.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "transaction.timeout.ms": args.transaction_timeout_ms,
            }
        )
        self.consumer = None
        self.partitions = []
        self.pos = {}  # partition -> next input offset to process, -1 if unknown
        self.committed_pos = {}  # partition -> what the group has committed, as this process knows it

    # -- helpers ---------------------------------------------------------------------

    def call(self, what, fn, attempts=10):
        """fn(), retried while it fails with a retriable error; a fatal error raises Fatal."""
        for attempt in range(attempts):
            try:
                return fn()
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():
                    raise Fatal(f"{what}: {error}") from None
                if error.retriable() and not error.txn_requires_abort() and attempt + 1 < attempts:
                    time.sleep(0.2)
                    continue
                raise

    def bounded(self, what, fn, timeout_s):
        """fn() on a thread, waited for `timeout_s`; past that the process gives up
        ("fatal", exit 2), as an application's watchdog would, and a new run takes over.

        librdkafka 2.x can block in send_offsets_to_transaction() forever, whatever its
        timeout, when the group coordinator it cached was removed from the metadata (a
        killed broker): confluentinc/librdkafka#5511 and #5456, open."""
        outcome = {}

        def target():
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            problem = f"{what} did not return in {timeout_s} s (librdkafka#5511); giving up"
            print(problem, file=sys.stderr, flush=True)
            say("fatal", problem)
            os._exit(2)
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def total(self, positions):
        return sum(o for o in positions.values() if o >= 0)

    def group_offsets(self):
        tps = [TopicPartition(self.args.input, p) for p in self.partitions]
        got = self.call("committed", lambda: self.consumer.committed(tps, timeout=30))
        out = {}
        for tp in got:
            if tp.error is not None:
                raise Fatal(f"committed offset of partition {tp.partition}: {tp.error}")
            out[tp.partition] = tp.offset if tp.offset >= 0 else -1
        return out

    def rewind(self, check):
        """Seek every partition to the group's committed offset (the beginning if none)."""
        offsets = self.group_offsets()
        if check and offsets != self.committed_pos:
            say("offsets-mismatch", "group has", sorted(offsets.items()), "this process committed",
                sorted(self.committed_pos.items()))
            sys.exit(3)
        self.committed_pos = dict(offsets)
        self.pos = dict(offsets)
        seeks = [TopicPartition(self.args.input, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in offsets.items()]
        if self.consumer.assignment():
            try:
                for tp in seeks:
                    self.consumer.seek(tp)
                return
            except KafkaException:
                pass  # a partition not fetching yet: assign below starts it at the offset
        self.consumer.assign(seeks)

    def abort(self):
        self.call("abort_transaction", lambda: self.producer.abort_transaction(30))

    # -- the loop ----------------------------------------------------------------------

    def run(self):
        args = self.args
        # First fence any previous instance with this transactional.id: its open transaction
        # is aborted (or its commit completed) before this instance reads the group's offsets.
        self.call("init_transactions", lambda: self.producer.init_transactions(60), attempts=3)
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            }
        )
        md = self.consumer.list_topics(args.input, timeout=30).topics[args.input]
        if md.error is not None:
            raise Fatal(f"metadata of {args.input}: {md.error}")
        self.partitions = sorted(md.partitions)
        self.rewind(check=False)
        if args.expected is not None:
            target = args.expected
        else:
            target = 0
            for p in self.partitions:
                target += self.consumer.get_watermark_offsets(TopicPartition(args.input, p), timeout=30, cached=False)[1]
        say("start", self.total(self.committed_pos))

        while self.total(self.committed_pos) < target:
            batch = self.next_batch()
            if not batch:
                continue
            stall = args.stall_after is not None and self.total(self.committed_pos) >= args.stall_after
            abort = self.rng.random() < args.abort_ratio
            try:
                self.transaction(batch, abort, stall)
            except KafkaException as exc:
                error = exc.args[0]
                if error.fatal():
                    raise Fatal(str(error)) from None
                say("aborted-on-error", len(batch), error)
                self.abort()
                self.rewind(check=True)
        say("done", self.total(self.committed_pos))
        self.consumer.close()
        return 0

    def next_batch(self):
        out = []
        for m in self.consumer.consume(num_messages=self.args.batch, timeout=1.0):
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise Fatal(f"consumer: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    say("consumer-error", error)
                continue
            p, o = m.partition(), m.offset()
            if 0 <= o < self.pos.get(p, -1):
                continue  # already processed (cannot happen after a seek; kept as a guard)
            out.append(m)
            self.pos[p] = o + 1
        return out

    def transaction(self, batch, abort, stall):
        args = self.args
        self.producer.begin_transaction()
        for m in batch:
            while True:
                try:
                    self.producer.produce(args.output, key=m.key(), value=b"out:" + m.value(), partition=m.partition())
                    break
                except BufferError:
                    self.producer.poll(0.05)
        # The consumer's positions after this batch (what consumer.position() reports for
        # the assignment), tracked here so that they match the batch exactly.
        offsets = [TopicPartition(args.input, p, o) for p, o in sorted(self.pos.items()) if o >= 0]
        metadata = self.consumer.consumer_group_metadata()
        self.call(
            "send_offsets_to_transaction",
            lambda: self.bounded(
                "send_offsets_to_transaction",
                lambda: self.producer.send_offsets_to_transaction(offsets, metadata, 30),
                45,
            ),
        )
        if stall or abort:
            # Make sure the records are in the log before the transaction is left or aborted.
            left = self.producer.flush(30)
            if left:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{left} records not delivered"))
        if stall:
            say("stalled", self.total(self.committed_pos), len(batch))
            while True:
                self.producer.poll(0.5)
        if abort:
            self.abort()
            say("aborted", self.total(self.committed_pos), len(batch))
            self.rewind(check=True)
            return
        self.call("commit_transaction", lambda: self.producer.commit_transaction(30))
        self.committed_pos = {p: o for p, o in self.pos.items()}
        say("committed", self.total(self.committed_pos), len(batch))


if __name__ == "__main__":
    sys.exit(main())
