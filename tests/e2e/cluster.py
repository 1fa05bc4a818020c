"""A cluster of real `strom serve` processes on loopback, and the faults to break it with.

Every node is a broker and a controller quorum voter (process.roles=broker,controller)
unless started as a broker only. Kafka listeners bind port 0 (each node registers the
port it got); controller listeners need fixed ports, since every node names them in
--controller-quorum-voters, so they are chosen free before the first start and kept.

Faults: kill -9, SIGSTOP/SIGCONT (a paused process keeps its sockets, like a long GC
pause or a stalled VM), a clean stop, a restart on the same or a wiped data directory, and,
in a cluster made with `network=True`, network cuts between chosen nodes: each node then runs
in its own network namespace (iproute2), on a bridge that the test's clients reach from
outside, and a cut is a pair of nftables rules in each of the two namespaces, so the two
nodes lose each other while clients still reach both. That needs root and `nft`.

Deadlines exist only so that a broken cluster cannot hang the suite; they are never
assertions about speed.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from conftest import Broker, ck_admin, wait_until

# Short cluster timings, so failures are noticed and healed within seconds.
FAST = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "300",
    "controller.quorum.election.timeout.ms": "500",
}


def run(*args: str):
    """A network setup command; its failure says what failed."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")


class Network:
    """Nodes in network namespaces on one bridge: node i at 10.N.0.i, clients at 10.N.0.254."""

    _made = itertools.count()

    def __init__(self, count: int):
        if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None:
            pytest.skip("network cuts need root, iproute2 and nftables (scripts/test installs them)")
        used = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
        free = (n for n in range(200, 250) if f" 10.{n}.0." not in used)
        self.subnet = next(free)
        self.tag = f"{os.getpid() % 10000:04d}{next(self._made) % 10}"
        self.bridge = f"sb{self.tag}"
        self.namespaces: dict[int, str] = {}
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"10.{self.subnet}.0.254/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for node_id in range(1, count + 1):
            ns = f"sn{self.tag}-{node_id}"
            veth = f"sv{self.tag}-{node_id}"
            run("ip", "netns", "add", ns)
            self.namespaces[node_id] = ns
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(node_id)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            self.nft(node_id, "add table inet strom")
            self.nft(node_id, "add chain inet strom input { type filter hook input priority 0; policy accept; }")
            self.nft(node_id, "add chain inet strom output { type filter hook output priority 0; policy accept; }")

    def address(self, node_id: int) -> str:
        return f"10.{self.subnet}.0.{node_id}"

    def nft(self, node_id: int, rule: str):
        run("ip", "netns", "exec", self.namespaces[node_id], "nft", rule)

    def cut(self, a: int, b: int):
        """Nodes a and b stop reaching each other, both ways; everyone else still reaches both."""
        for here, there in ((a, b), (b, a)):
            self.nft(here, f"add rule inet strom output ip daddr {self.address(there)} drop")
            self.nft(here, f"add rule inet strom input ip saddr {self.address(there)} drop")

    def heal(self):
        for node_id in self.namespaces:
            self.nft(node_id, "flush chain inet strom input")
            self.nft(node_id, "flush chain inet strom output")

    def close(self):
        for ns in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def free_port() -> int:
    """A port free now and below the kernel's ephemeral range (32768 and up),
    so no client connection or `:0` listener of a test running beside this
    one takes it before the node binds it."""
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Node(Broker):
    """One node of a cluster: a Broker started with its cluster flags."""

    def __init__(self, cluster: "Cluster", node_id: int, voter: bool, base: Path):
        super().__init__(cluster.binary, base / f"node{node_id}" / "data", base / f"node{node_id}" / "logs", cluster.settings)
        self.cluster = cluster
        self.node_id = node_id
        self.voter = voter
        network = cluster.network
        self.address = network.address(node_id) if network else "127.0.0.1"
        # In its own namespace a node has every port to itself.
        self.controller_port = (9093 if network else free_port()) if voter else None
        self.paused = False

    def cli_json(self, *args):
        """`strom ARGS... --output json` through this node, parsed."""
        out = subprocess.run(
            [str(self.binary), *args, "--output", "json", "--bootstrap", self.bootstrap],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"strom {' '.join(args)} via node {self.node_id} failed:\n{out.stderr}"
        return json.loads(out.stdout)

    def command(self) -> list[str]:
        cmd = super().command()
        if self.cluster.network:
            at = cmd.index("--listeners") + 1
            cmd[at] = cmd[at].replace("127.0.0.1", self.address)
            cmd = ["ip", "netns", "exec", self.cluster.network.namespaces[self.node_id]] + cmd
        cmd += [
            "--node-id",
            str(self.node_id),
            "--controller-quorum-voters",
            self.cluster.voters(),
        ]
        if self.voter:
            cmd += ["--controller-listener", f"{self.address}:{self.controller_port}"]
        else:
            cmd += ["--process-roles", "broker"]
        return cmd

    def pause(self):
        """SIGSTOP: the process stops running but keeps its sockets open."""
        assert self.alive() and not self.paused
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        assert self.paused
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def wipe(self):
        """Removes the data directory (the node must be down): a replaced disk."""
        assert not self.alive()
        shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)


class Cluster:
    def __init__(
        self,
        binary: Path,
        base: Path,
        voters: int,
        brokers_only: int = 0,
        settings: Optional[dict] = None,
        network: bool = False,
    ):
        self.binary = binary
        self.settings = {**FAST, **(settings or {})}
        self.network: Optional[Network] = Network(voters + brokers_only) if network else None
        self.nodes: dict[int, Node] = {}
        for node_id in range(1, voters + brokers_only + 1):
            self.nodes[node_id] = Node(self, node_id, node_id <= voters, base)

    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{n.address}:{n.controller_port}" for n in self.nodes.values() if n.voter)

    def start(self, timeout: float = 60.0) -> "Cluster":
        # Voters wait for each other to elect a controller before they listen, so
        # they start together; a start returns once the node printed its banner.
        import threading

        errors: list[BaseException] = []

        def start(node: Node):
            try:
                node.start(timeout)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self.wait_for_brokers(len(self.nodes))
        return self

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive() and not n.paused]

    @property
    def bootstrap(self) -> str:
        """Every running node, as a client's bootstrap list."""
        return ",".join(n.bootstrap for n in self.running())

    def metadata(self, node: Node, timeout: float = 10):
        return ck_admin(node.bootstrap).list_topics(timeout=timeout)

    def wait_for_brokers(self, count: int, timeout: float = 60.0):
        """Until every running node's Metadata lists `count` brokers."""

        def all_see():
            return all(len(self.metadata(n).brokers) == count for n in self.running())

        wait_until(all_see, timeout, f"every running node to list {count} brokers")

    def controller(self, via: Optional[Node] = None) -> int:
        """The active controller's node id, as a running node reports it."""
        node = via or self.running()[0]
        return self.metadata(node).controller_id

    def wait_for_new_controller(self, old: int, timeout: float = 30.0) -> int:
        """Until every running node other than `old` agrees on an active controller that is
        not `old`; returns it."""
        others = [n for n in self.running() if n.node_id != old]

        def agreed():
            ids = {self.controller(n) for n in others}
            return len(ids) == 1 and old not in ids

        wait_until(agreed, timeout, f"the nodes other than {old} to agree on a new active controller")
        return self.controller(others[0])

    def leader(self, topic: str, partition: int = 0, via: Optional[Node] = None) -> int:
        md = self.metadata(via or self.running()[0])
        return md.topics[topic].partitions[partition].leader

    def close(self):
        problems = []
        for n in self.nodes.values():
            if n.paused:
                n.resume()
            if n.proc is not None and n.proc.poll() is None:
                try:
                    n.stop()
                except AssertionError as e:
                    problems.append(f"node {n.node_id}: {e}")
        if self.network:
            self.network.close()
        if problems:
            pytest.fail("at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def cluster_factory(strom_bin, tmp_path):
    """Start clusters: cluster_factory(3) gives three broker+controller nodes, started."""
    made: list[Cluster] = []

    def make(
        voters: int = 3, brokers_only: int = 0, settings: Optional[dict] = None, start: bool = True, network: bool = False
    ) -> Cluster:
        c = Cluster(strom_bin, tmp_path / f"cluster{len(made)}", voters, brokers_only, settings, network)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    for c in made:
        c.close()
