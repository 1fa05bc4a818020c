"""A cluster of three `strom serve` nodes: forming it, what clients see from any broker,
admin requests reaching the active controller, and a new controller after the old one
is killed."""

from __future__ import annotations

import json
import subprocess

from cluster import cluster_factory  # noqa: F401 - the fixture
from conftest import ck_admin, ck_consume, ck_produce, create_topic, kp_consumer, wait_for_topic, wait_until


def test_any_broker_bootstraps_every_client_and_each_sees_three_brokers(cluster_factory):
    cluster = cluster_factory(3)
    ids = set(cluster.nodes)
    for node in cluster.nodes.values():
        md = cluster.metadata(node)
        assert set(md.brokers) == ids, f"librdkafka via node {node.node_id} sees {sorted(md.brokers)}"
        assert md.controller_id in ids
        ports = {b.port for b in md.brokers.values()}
        assert ports == {n.port for n in cluster.nodes.values()}, "each broker is listed at its own listener"

        consumer = kp_consumer(node.bootstrap)
        try:
            def kafka_python_sees_three():
                consumer.topics()  # a Metadata request
                return {b.nodeId for b in consumer._client.cluster.brokers()} == ids

            wait_until(kafka_python_sees_three, 20, f"kafka-python via node {node.node_id} to see 3 brokers")
        finally:
            consumer.close()

        out = subprocess.run(["kcat", "-b", node.bootstrap, "-L", "-J"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        listed = json.loads(out.stdout)
        assert {b["id"] for b in listed["brokers"]} == ids, f"kcat via node {node.node_id}: {listed['brokers']}"
    controllers = {cluster.metadata(n).controller_id for n in cluster.nodes.values()}
    assert len(controllers) == 1, f"the nodes disagree on the active controller: {controllers}"


def test_a_topic_created_through_one_broker_is_served_by_its_leaders_on_all(cluster_factory):
    cluster = cluster_factory(3)
    create_topic(cluster[2].bootstrap, "spread", partitions=6)
    for node in cluster.nodes.values():
        t = wait_for_topic(node.bootstrap, "spread", 6)
        leaders = {p.leader for p in t.partitions.values()}
        assert leaders == {1, 2, 3}, f"node {node.node_id} shows leaders {leaders}: placement spreads them"
    # A client that knows only node 3 finds every leader and writes to all six partitions.
    records = [{"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": i % 6} for i in range(600)]
    produced = ck_produce(cluster[3].bootstrap, "spread", records, acks="1")
    assert {r.partition for r in produced} == set(range(6))
    consumed = ck_consume(cluster[1].bootstrap, "spread", range(6), expected=600)
    assert sorted((r.partition, r.offset, r.value) for r in consumed) == sorted(
        (r.partition, r.offset, r.value) for r in produced
    )


def test_a_replication_factor_above_the_live_brokers_is_refused(cluster_factory):
    """Kafka's INVALID_REPLICATION_FACTOR, with a message that says how many brokers there are."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    cluster = cluster_factory(3)
    admin = ck_admin(cluster[1].bootstrap)
    future = admin.create_topics([NewTopic("too-wide", 1, 4)], operation_timeout=30)["too-wide"]
    try:
        future.result(30)
        raise AssertionError("a topic with replication factor 4 was created on 3 brokers")
    except KafkaException as e:
        error = e.args[0]
        assert error.code() == KafkaError.INVALID_REPLICATION_FACTOR, error
        assert "3 broker(s)" in error.str(), error.str()


def test_killing_the_active_controller_elects_another_and_admin_requests_reach_it(cluster_factory):
    cluster = cluster_factory(3)
    old = cluster.controller()
    cluster[old].kill9()
    survivors = [n for n in cluster.nodes.values() if n.node_id != old]
    new = cluster.wait_for_new_controller(old)
    # Created through the node that is not the controller, so the request is forwarded.
    via = next(n for n in survivors if n.node_id != new)
    admin = ck_admin(via.bootstrap)
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic("after-failover", 2, 1)], operation_timeout=30)["after-failover"].result(30)
    for node in survivors:
        wait_for_topic(node.bootstrap, "after-failover", 2)
    cluster[old].start()
    wait_for_topic(cluster[old].bootstrap, "after-failover", 2)
    cluster.wait_for_brokers(3)


def test_a_stopped_broker_leaves_the_metadata_and_comes_back(cluster_factory):
    cluster = cluster_factory(3)
    cluster[3].stop()
    cluster.wait_for_brokers(2)
    cluster[3].start()
    cluster.wait_for_brokers(3)


def test_a_broker_only_node_joins_by_naming_the_voters(cluster_factory):
    cluster = cluster_factory(3, brokers_only=1)
    create_topic(cluster[4].bootstrap, "four", partitions=4)
    t = wait_for_topic(cluster[1].bootstrap, "four", 4)
    assert {p.leader for p in t.partitions.values()} == {1, 2, 3, 4}
    on_four = next(i for i, p in t.partitions.items() if p.leader == 4)
    produced = ck_produce(cluster[1].bootstrap, "four", [{"value": b"x", "partition": on_four}] * 10, acks="1")
    assert len(produced) == 10
    assert cluster.controller() in {1, 2, 3}, "only voters are controllers"


def test_an_active_controller_cut_off_from_the_other_voters_is_replaced_and_commits_nothing(cluster_factory):
    """The active controller loses the network to both other voters while clients still
    reach it, and so does a broker-only node. The other two elect a controller, which the
    broker-only node finds, and take admin requests through it; a topic asked of
    the cut-off node is never created (it cannot commit without a majority, and the request
    fails rather than hanging); after the cut heals that node follows the new controller,
    sees what the majority decided, and its own uncommitted change is gone everywhere."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    cluster = cluster_factory(3, brokers_only=1, network=True, settings={"request.timeout.ms": "5000"})
    old = cluster.controller()
    others = [node_id for node_id in (1, 2, 3) if node_id != old]
    for other in others:
        cluster.network.cut(old, other)
    # The broker-only node 4 still reaches the cut-off node too; it must learn of the new
    # controller all the same.
    cluster.wait_for_new_controller(old)
    create_topic(cluster[4].bootstrap, "decided-by-the-majority", partitions=2)
    for other in others:
        wait_for_topic(cluster[other].bootstrap, "decided-by-the-majority", 2)

    admin = ck_admin(cluster[old].bootstrap)
    future = admin.create_topics([NewTopic("asked-of-the-minority", 1, 1)], operation_timeout=10, request_timeout=30)
    try:
        future["asked-of-the-minority"].result(60)
        raise AssertionError("a controller without a majority created a topic")
    except KafkaException as e:
        print(f"the cut-off node answered: {e.args[0]}")

    cluster.network.heal()

    def old_node_caught_up():
        md = cluster.metadata(cluster[old])
        return md.controller_id != old and "decided-by-the-majority" in md.topics

    wait_until(old_node_caught_up, 60, f"node {old} to follow the new controller after the cut healed")
    cluster.wait_for_brokers(4)
    for node in cluster.nodes.values():
        assert "asked-of-the-minority" not in cluster.metadata(node).topics, f"node {node.node_id} lists the minority's topic"


def test_a_paused_active_controller_is_replaced_and_on_waking_follows_the_new_one(cluster_factory):
    """SIGSTOP of the active controller past the election timeout and the broker session:
    the others elect a controller and take a new topic; on SIGCONT the old one, whose term
    is over, follows the new controller and sees the topic, and its broker is back."""
    cluster = cluster_factory(3)
    old = cluster.controller()
    cluster[old].pause()
    new = cluster.wait_for_new_controller(old)
    cluster.wait_for_brokers(2)
    create_topic(cluster[new].bootstrap, "while-paused", partitions=3)
    cluster[old].resume()

    def woke_and_followed():
        md = cluster.metadata(cluster[old])
        return md.controller_id == new and "while-paused" in md.topics

    wait_until(woke_and_followed, 60, f"node {old} to follow controller {new} after SIGCONT")
    cluster.wait_for_brokers(3)


def cluster_info(node) -> dict:
    return node.cli_json("cluster", "info")


def test_cluster_info_and_a_broker_only_node_follow_a_controller_failover(cluster_factory):
    """`strom cluster info` from any node: every broker with its role (the active controller,
    the other voters, the broker-only node), the quorum's voters and observer, and no
    metadata lag once settled. After kill -9 of the active controller, the broker-only node
    (which followed a voter's metadata) learns of the new controller, takes an admin request
    and shows the topic; cluster info then names the new active controller."""
    cluster = cluster_factory(3, brokers_only=1)
    old = cluster.controller()

    def settled(via, active: int, brokers: set[int]):
        info = cluster_info(via)
        roles = {b["id"]: b["role"] for b in info["brokers"]}
        expected = {i: ("controller (active)" if i == active else "controller" if i <= 3 else "broker") for i in brokers}
        quorum = info.get("quorum") or {}
        return (
            roles == expected
            and all(b["metadata_lag"] in (0, None) for b in info["brokers"])
            and quorum.get("leader") == active
            and sorted(v["id"] for v in quorum["voters"]) == [1, 2, 3]
            and [o["id"] for o in quorum.get("observers", [])] == [4]
        )

    for node in cluster.nodes.values():
        wait_until(lambda: settled(node, old, {1, 2, 3, 4}), 30, f"cluster info via node {node.node_id} to settle")

    cluster[old].kill9()
    new = cluster.wait_for_new_controller(old)
    assert new in {1, 2, 3}
    create_topic(cluster[4].bootstrap, "after-failover-via-broker-only", partitions=3)
    for node in cluster.running():
        wait_for_topic(node.bootstrap, "after-failover-via-broker-only", 3)
    cluster.wait_for_brokers(3)
    wait_until(lambda: cluster_info(cluster[4])["controller"] == new, 30, "cluster info via node 4 to name the new controller")
