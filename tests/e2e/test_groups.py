"""Consumer groups against a real broker, with librdkafka and kafka-python.

Members run as separate processes (group_member.py) so that one can leave cleanly (SIGTERM)
and another can die (SIGKILL). Each member writes what it processed and when partitions
were assigned and revoked, and commits after processing; the tests then check Kafka's
promises: every record processed at least once and none lost, no partition owned by two
members at once, rebalances after every membership change, offsets kept across broker
restarts and crashes.
"""

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from conftest import ck_consume, ck_consumer, ck_produce, create_topic, wait_until

HERE = Path(__file__).parent
PARTITIONS = 6
SETTINGS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    # KIP-848 members: a dead member is noticed as fast as a classic one here.
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.heartbeat.interval.ms": "500",
}


class Member:
    """A group member process and what it wrote."""

    def __init__(self, bootstrap, group, topic, out, strategy="range", instance=None, session_timeout_ms=6000,
                 protocol="classic"):
        self.out = Path(out)
        command = [sys.executable, str(HERE / "group_member.py"), bootstrap, group, topic, str(self.out),
                   "--strategy", strategy, "--session-timeout-ms", str(session_timeout_ms), "--protocol", protocol]
        if instance:
            command += ["--instance", instance]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.killed_at = None

    def lines(self):
        if not self.out.exists():
            return []
        return [line.split() for line in self.out.read_text().splitlines() if line.strip()]

    def assignment(self):
        owned = set()
        for line in self.lines():
            if line[0] == "assign":
                owned |= {int(p) for p in line[2:]}
            elif line[0] == "revoke":
                owned -= {int(p) for p in line[2:]}
        return owned

    def records(self):
        return [(int(line[1]), int(line[2]), line[3]) for line in self.lines() if line[0] == "record"]

    def ownership(self):
        """(partition, start_ns, end_ns) intervals of ownership."""
        start = {}
        intervals = []
        for line in self.lines():
            if line[0] == "assign":
                for p in line[2:]:
                    start.setdefault(int(p), int(line[1]))
            elif line[0] == "revoke":
                for p in line[2:]:
                    if int(p) in start:
                        intervals.append((int(p), start.pop(int(p)), int(line[1])))
        end = self.killed_at or time.monotonic_ns()
        intervals += [(p, s, end) for p, s in start.items()]
        return intervals

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def kill9(self):
        self.killed_at = time.monotonic_ns()
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def members():
    started = []
    yield started
    for member in started:
        member.close()


def produce_range(bootstrap, topic, start, end):
    ck_produce(bootstrap, topic, [{"key": str(i).encode(), "value": str(i).encode()} for i in range(start, end)])


def wait_for_assignment(group_members, what, timeout=30):
    """Until the live members' assignments partition the topic exactly."""

    def covered():
        owned = [m.assignment() for m in group_members]
        union = set().union(*owned)
        disjoint = sum(len(o) for o in owned) == len(union)
        return union == set(range(PARTITIONS)) and disjoint and all(owned)

    wait_until(covered, timeout=timeout, what=what, interval=0.2)


def assert_no_partition_had_two_owners(all_members):
    intervals = defaultdict(list)
    for member in all_members:
        for partition, start, end in member.ownership():
            intervals[partition].append((start, end, member.out.name))
    for partition, spans in intervals.items():
        spans.sort()
        for (s1, e1, m1), (s2, e2, m2) in zip(spans, spans[1:]):
            assert s2 >= e1, f"partition {partition} owned by {m1} and {m2} at once"


@pytest.mark.parametrize(
    "protocol,strategy",
    [("classic", "range"), ("classic", "cooperative-sticky"), ("consumer", "uniform"), ("consumer", "range")],
)
def test_group_shares_partitions_and_survives_members_coming_and_going(
    broker_factory, members, tmp_path, protocol, strategy
):
    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    topic = f"shared-{protocol}-{strategy}"
    create_topic(bootstrap, topic, PARTITIONS)

    def member(name):
        return Member(bootstrap, "workers", topic, tmp_path / name, strategy, protocol=protocol)

    # Three members split six partitions.
    for i in range(3):
        members.append(member(f"m{i}.log"))
    wait_for_assignment(members, "three members to share the partitions")
    produce_range(bootstrap, topic, 0, 20_000)

    # A fourth joins: the group rebalances to four.
    members.append(member("m3.log"))
    wait_for_assignment(members, "the group to rebalance to four members")
    produce_range(bootstrap, topic, 20_000, 40_000)

    # One leaves cleanly, one dies: the rest take over their partitions.
    members[0].stop()
    members[1].kill9()
    survivors = members[2:]
    wait_for_assignment(survivors, "the survivors to take over (within the session timeout)", timeout=30)
    produce_range(bootstrap, topic, 40_000, 60_000)

    def all_processed():
        seen = {value for member in members for (_, _, value) in member.records()}
        return len(seen) == 60_000

    wait_until(all_processed, timeout=120, what="every record to be processed", interval=0.5)
    seen = [value for member in members for (_, _, value) in member.records()]
    assert set(seen) == {str(i) for i in range(60_000)}, "none lost"
    assert_no_partition_had_two_owners(members)


def test_two_groups_each_receive_every_record(broker_factory, members, tmp_path):
    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "broadcast", PARTITIONS)
    produce_range(bootstrap, "broadcast", 0, 5_000)
    first = Member(bootstrap, "group-a", "broadcast", tmp_path / "a.log")
    second = Member(bootstrap, "group-b", "broadcast", tmp_path / "b.log")
    members += [first, second]
    for member in (first, second):
        wait_until(lambda m=member: len({v for _, _, v in m.records()}) == 5_000, timeout=60,
                   what=f"{member.out.name} to receive every record", interval=0.3)


def test_static_member_restarted_in_time_keeps_its_partitions_without_rebalance(broker_factory, members, tmp_path):
    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "static", PARTITIONS)
    steady = Member(bootstrap, "statics", "static", tmp_path / "steady.log", instance="steady", session_timeout_ms=20_000)
    restarting = Member(bootstrap, "statics", "static", tmp_path / "restart-1.log", instance="restarting",
                        session_timeout_ms=20_000)
    members += [steady, restarting]
    wait_for_assignment(members, "two static members to share the partitions")
    before = restarting.assignment()
    steady_events = len([line for line in steady.lines() if line[0] in ("assign", "revoke")])

    restarting.kill9()
    again = Member(bootstrap, "statics", "static", tmp_path / "restart-2.log", instance="restarting",
                   session_timeout_ms=20_000)
    members.append(again)
    wait_until(lambda: again.assignment(), timeout=30, what="the restarted static member to get partitions")
    assert again.assignment() == before, "the same partitions came back"
    time.sleep(2)  # a rebalance, if one were triggered, would show up as events on the other member
    assert len([line for line in steady.lines() if line[0] in ("assign", "revoke")]) == steady_events, \
        "the other member saw no rebalance"


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_committed_offsets_survive_broker_restart_and_crash(broker_factory, tmp_path, how):
    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "resume", 2)
    produce_range(bootstrap, "resume", 0, 1_000)
    consumer = ck_consumer(bootstrap, **{"group.id": "resumers", "enable.auto.commit": False})
    consumer.subscribe(["resume"])
    consumed = 0
    next_offsets = {}
    deadline = time.monotonic() + 60
    while consumed < 600 and time.monotonic() < deadline:
        for message in consumer.consume(100, timeout=0.5):
            assert message.error() is None
            consumed += 1
            next_offsets[message.partition()] = message.offset() + 1
            if consumed == 600:
                break
    # Commit exactly what was processed: the first 600 records.
    consumer.commit(offsets=[TopicPartition("resume", p, o) for p, o in next_offsets.items()], asynchronous=False)
    committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition("resume", p) for p in range(2)])}
    consumer.close()
    assert sum(committed.values()) == 600

    if how == "restart":
        broker.restart()
    else:
        broker.crash_restart()
    bootstrap = broker.bootstrap
    resumed = ck_consumer(bootstrap, **{"group.id": "resumers", "enable.auto.commit": False})
    after = {tp.partition: tp.offset for tp in resumed.committed([TopicPartition("resume", p) for p in range(2)], timeout=30)}
    assert after == committed, "committed offsets came back after the broker restarted"
    resumed.subscribe(["resume"])
    rest = []
    deadline = time.monotonic() + 60
    while len(rest) < 400 and time.monotonic() < deadline:
        rest += [m for m in resumed.consume(100, timeout=0.5) if m.error() is None]
    resumed.close()
    assert len(rest) == 400, "the consumer resumed where the group left off"
    assert all(m.offset() >= committed[m.partition()] for m in rest)


def _committed(consumer):
    from kafka.errors import CommitFailedError

    try:
        consumer.poll(timeout_ms=100)
        consumer.commit()
        return True
    except CommitFailedError:
        return False


def test_kafka_python_consumer_group(broker_factory):
    from kafka import KafkaConsumer
    from kafka.errors import CommitFailedError

    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "kp-group", PARTITIONS)
    produce_range(bootstrap, "kp-group", 0, 3_000)
    consumers = [
        KafkaConsumer("kp-group", bootstrap_servers=bootstrap, group_id="kp", auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500)
        for _ in range(2)
    ]
    seen = set()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            for consumer in consumers:
                for records in consumer.poll(timeout_ms=200).values():
                    seen |= {r.value for r in records}
                try:
                    consumer.commit()
                except CommitFailedError:
                    pass  # refused during a rebalance; the records come again

            owned = [consumer.assignment() for consumer in consumers]
            if len(seen) == 3_000 and all(owned):
                break
        owned = [{tp.partition for tp in consumer.assignment()} for consumer in consumers]
        for consumer in consumers:
            wait_until(lambda c=consumer: _committed(c), timeout=30, what="a final commit", interval=0.2)
        assert len(seen) == 3_000
        assert owned[0] and owned[1] and not (owned[0] & owned[1]), f"the two members share the partitions: {owned}"
    finally:
        for consumer in consumers:
            consumer.close()
    # The group's commits are visible to librdkafka too.
    check = ck_consumer(bootstrap, **{"group.id": "kp"})
    committed = check.committed([TopicPartition("kp-group", p) for p in range(PARTITIONS)], timeout=30)
    check.close()
    assert sum(tp.offset for tp in committed) == 3_000


def test_group_admin_apis_and_simple_commits(broker_factory, members, tmp_path):
    """ListGroups, DescribeGroups, OffsetFetch, OffsetDelete and DeleteGroups through
    librdkafka's admin client, and offsets committed by a consumer outside any group
    membership (assign() + commit, Kafka's "simple" consumer)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    from conftest import ck_admin

    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "admin-groups", 2)
    produce_range(bootstrap, "admin-groups", 0, 100)

    simple = ck_consumer(bootstrap, **{"group.id": "simple", "enable.auto.offset.store": True})
    simple.assign([TopicPartition("admin-groups", 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        got += [m for m in simple.consume(10, timeout=0.5) if m.error() is None]
    simple.commit(offsets=[TopicPartition("admin-groups", 0, 7)], asynchronous=False)
    simple.close()

    live = Member(bootstrap, "busy", "admin-groups", tmp_path / "busy.log")
    members.append(live)
    wait_until(lambda: live.assignment() == {0, 1}, timeout=30, what="the busy group to be stable")

    admin = ck_admin(bootstrap)
    listed = admin.list_consumer_groups().result(timeout=30)
    ids = {group.group_id for group in listed.valid}
    assert {"simple", "busy"} <= ids, ids

    described = admin.describe_consumer_groups(["busy"])["busy"].result(timeout=30)
    assert str(described.state).endswith("STABLE")
    assert len(described.members) == 1
    assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1}

    fetched = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("simple")])["simple"].result(timeout=30)
    assert [(tp.partition, tp.offset) for tp in fetched.topic_partitions] == [(0, 7)]

    # A group with members cannot be deleted; an empty one can, with its offsets.
    busy = admin.delete_consumer_groups(["busy"])["busy"]
    with pytest.raises(Exception):
        busy.result(timeout=30)
    admin.delete_consumer_groups(["simple"])["simple"].result(timeout=30)
    listed = admin.list_consumer_groups().result(timeout=30)
    assert "simple" not in {group.group_id for group in listed.valid}


def test_offsets_for_missing_topics_or_partitions_are_refused(broker_factory):
    """Kafka stores committed offsets only for partitions that exist: the admin client's
    alter-offsets and a consumer's commit get UNKNOWN_TOPIC_OR_PARTITION for a missing
    topic or partition, and the existing partition in the same request is committed."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException

    from conftest import ck_admin

    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "offsets-here", 1)
    wanted = [TopicPartition("offsets-here", 0, 5), TopicPartition("offsets-here", 3, 5),
              TopicPartition("offsets-nowhere", 0, 5)]

    # The admin client reports each partition's error in the result.
    admin = ck_admin(bootstrap)
    future = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("altered", wanted)])["altered"]
    errors = [(tp.topic, tp.partition, tp.error and tp.error.code()) for tp in future.result(timeout=30).topic_partitions]
    assert errors == [("offsets-here", 0, None), ("offsets-here", 3, KafkaError.UNKNOWN_TOPIC_OR_PART),
                      ("offsets-nowhere", 0, KafkaError.UNKNOWN_TOPIC_OR_PART)], errors

    # A consumer's synchronous commit: librdkafka answers every partition with its error.
    consumer = ck_consumer(bootstrap, **{"group.id": "committer"})
    try:
        with pytest.raises(KafkaException) as failed:
            consumer.commit(offsets=wanted, asynchronous=False)
        assert failed.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, failed.value
    finally:
        consumer.close()

    # Only the partition that exists was stored, for both groups.
    for group in ("altered", "committer"):
        asked = [TopicPartition(tp.topic, tp.partition) for tp in wanted]
        fetched = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, asked)])[group]
        stored = {(tp.topic, tp.partition): tp.offset for tp in fetched.result(timeout=30).topic_partitions}
        assert stored[("offsets-here", 0)] == 5, (group, stored)
        assert stored.get(("offsets-here", 3), -1001) < 0, (group, stored)
        assert stored.get(("offsets-nowhere", 0), -1001) < 0, (group, stored)


def test_consumer_protocol_static_member_is_not_taken_over_while_active(broker_factory):
    """KIP-848 static membership: a second consumer with the group.instance.id of an active
    member is fenced (UNRELEASED_INSTANCE_ID, fatal for librdkafka) and the active member
    keeps its partitions."""
    from confluent_kafka import Consumer, KafkaError

    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "static-848", 4)
    errors = {"first": [], "second": []}

    def member(name):
        return Consumer({
            "bootstrap.servers": bootstrap, "group.id": "static-848", "group.protocol": "consumer",
            "group.instance.id": "instance-1", "error_cb": errors[name].append,
        })

    first = member("first")
    first.subscribe(["static-848"])

    def assigned():
        first.poll(0.1)
        return len(first.assignment()) == 4

    wait_until(assigned, 30, "the first member to own the four partitions")
    second = member("second")
    second.subscribe(["static-848"])

    def fenced():
        # librdkafka reports the fatal error as a consumer event (or to error_cb).
        event = second.poll(0.1)
        if event is not None and event.error() is not None:
            errors["second"].append(event.error())
        first.poll(0.01)
        return any(error.fatal() or error.code() == KafkaError._FATAL for error in errors["second"])

    try:
        wait_until(fenced, 30, "the second member to be fenced")
        message = " ".join(str(error) for error in errors["second"])
        assert "instance ID is still used by another member" in message, message
        assert second.assignment() == []
        assert len(first.assignment()) == 4
        assert errors["first"] == [], errors["first"]
    finally:
        second.close()
        first.close()


def test_consumer_protocol_regex_subscription_follows_new_topics(broker_factory):
    """KIP-848 regular-expression subscriptions: the broker resolves SubscribedTopicRegex
    (whole topic names, RE2 syntax) and resolves it again when a matching topic is created."""
    broker = broker_factory(SETTINGS)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, "metrics-cpu", 2)
    create_topic(bootstrap, "metrics-disk", 1)
    create_topic(bootstrap, "logs", 3)
    consumer = ck_consumer(bootstrap, **{"group.id": "by-pattern", "group.protocol": "consumer",
                                         "topic.metadata.refresh.interval.ms": 1000})
    try:
        consumer.subscribe(["^metrics-.*"])

        def assigned(expected):
            def check():
                consumer.poll(0.1)
                return {(tp.topic, tp.partition) for tp in consumer.assignment()} == expected
            return check

        first = {("metrics-cpu", 0), ("metrics-cpu", 1), ("metrics-disk", 0)}
        wait_until(assigned(first), 30, "the partitions of the two matching topics")
        create_topic(bootstrap, "metrics-net", 1)
        wait_until(assigned(first | {("metrics-net", 0)}), 30, "the new matching topic's partition")
    finally:
        consumer.close()
