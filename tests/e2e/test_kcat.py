"""kcat, the command-line Kafka client people reach for first, works against Strom.

kcat is built on the system's librdkafka (Debian's, an older version than the
confluent-kafka wheel), so it also covers an older client's protocol choices.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import by_partition, ck_consume, ck_produce, create_topic

SEP = "\x1f"  # unit separator: never appears in the test data


@pytest.fixture(scope="module")
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("kcat is not installed (apt-get install -y kcat); it is required in CI", pytrace=False)
        pytest.skip("kcat is not installed (apt-get install -y kcat)")
    return path


def run_kcat(kcat: str, args: list[str], stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    res = subprocess.run([kcat, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"kcat {' '.join(args)} exited {res.returncode}\nstderr:\n{res.stderr[-4000:]}"
    return res


def kcat_produce(kcat, bootstrap, topic, lines: list[str], headers: list[str], codec: str = "none"):
    args = ["-b", bootstrap, "-t", topic, "-P", "-K:", "-z", codec, "-X", "acks=all"]
    for h in headers:
        args += ["-H", h]
    res = run_kcat(kcat, args, stdin="".join(line + "\n" for line in lines))
    assert "ERROR" not in res.stderr, f"kcat reported an error while producing:\n{res.stderr[-4000:]}"


def kcat_consume(kcat, bootstrap, topic) -> list[dict]:
    """Read the whole topic from the beginning and exit at the end (-e)."""
    fmt = SEP.join(["%p", "%o", "%k", "%s", "%h", "%T"]) + "\n"
    res = run_kcat(kcat, ["-b", bootstrap, "-t", topic, "-C", "-e", "-o", "beginning", "-f", fmt])
    out = []
    for line in res.stdout.splitlines():
        p, o, k, s, h, ts = line.split(SEP)
        out.append({"partition": int(p), "offset": int(o), "key": k, "value": s, "headers": h, "timestamp": int(ts)})
    return out


def parse_kcat_headers(h: str) -> list[tuple[str, str]]:
    if not h:
        return []
    return [tuple(kv.split("=", 1)) for kv in h.split(",")]


@pytest.mark.parametrize("codec", ["none", "snappy", "zstd"])
def test_kcat_produce_then_consume(broker, kcat, codec):
    """kcat -P with keys (-K:) and headers (-H) then kcat -C -e: every line comes back once,
    with its key and headers, in input order per partition, at offsets 0..n-1."""
    topic = f"kcat-{codec}"
    create_topic(broker.bootstrap, topic, 3)
    n = 3000
    lines = [f"k{i}:value {i} with: colons and spaces" for i in range(n)]
    headers = ["source=kcat", "trace=abc=def"]
    t0 = int(time.time() * 1000)
    kcat_produce(kcat, broker.bootstrap, topic, lines, headers, codec)
    t1 = int(time.time() * 1000) + 1

    got = kcat_consume(kcat, broker.bootstrap, topic)
    assert len(got) == n, f"kcat consumed {len(got)} records, produced {n}"
    sent = {f"k{i}": f"value {i} with: colons and spaces" for i in range(n)}
    assert {r["key"]: r["value"] for r in got} == sent
    for r in got:
        assert parse_kcat_headers(r["headers"]) == [("source", "kcat"), ("trace", "abc=def")], r
        assert t0 <= r["timestamp"] <= t1, f"CreateTime {r['timestamp']} outside the produce window [{t0}, {t1}]"
    for p, recs in by_partition_dicts(got).items():
        assert [r["offset"] for r in recs] == list(range(len(recs))), f"partition {p}: offsets not 0..n-1"
        idx = [int(r["key"][1:]) for r in recs]
        assert idx == sorted(idx), f"partition {p}: records out of input order"


def by_partition_dicts(recs):
    out = {}
    for r in recs:
        out.setdefault(r["partition"], []).append(r)
    return out


def test_kcat_and_librdkafka_interoperate(broker, kcat):
    """What confluent-kafka writes kcat reads (headers included), and the other way round."""
    create_topic(broker.bootstrap, "from-ck", 2)
    base_ts = int(time.time() * 1000) - 60_000
    records = [
        {"key": b"ck-%d" % i, "value": b"payload-%d" % i, "headers": [("h", b"v%d" % i)], "timestamp": base_ts + i}
        for i in range(500)
    ]
    produced = ck_produce(broker.bootstrap, "from-ck", records)
    got = kcat_consume(kcat, broker.bootstrap, "from-ck")
    want = {(p.partition, p.offset): (r["key"].decode(), r["value"].decode(), f"h=v{i}", r["timestamp"]) for i, (p, r) in enumerate(zip(produced, records))}
    assert {(r["partition"], r["offset"]): (r["key"], r["value"], r["headers"], r["timestamp"]) for r in got} == want

    create_topic(broker.bootstrap, "from-kcat", 2)
    lines = [f"kc-{i}:line-{i}" for i in range(500)]
    kcat_produce(kcat, broker.bootstrap, "from-kcat", lines, ["origin=kcat"], codec="lz4")
    consumed = ck_consume(broker.bootstrap, "from-kcat", range(2), 500)
    assert sorted((r.key, r.value, r.headers) for r in consumed) == sorted(
        (f"kc-{i}".encode(), f"line-{i}".encode(), (("origin", b"kcat"),)) for i in range(500)
    )
    for p, recs in by_partition(consumed).items():
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {p}: offsets not 0..n-1"


def test_kcat_metadata_lists_topic(broker, kcat):
    """kcat -L shows broker 1 at the address we connected to and the topic with its partitions led by broker 1."""
    create_topic(broker.bootstrap, "meta-topic", 4)
    res = run_kcat(kcat, ["-b", broker.bootstrap, "-L", "-J"])
    md = json.loads(res.stdout)
    brokers = {b["id"]: b["name"] for b in md["brokers"]}
    assert brokers == {1: broker.bootstrap}, f"brokers in metadata: {brokers}"
    topics = {t["topic"]: t for t in md["topics"]}
    assert "meta-topic" in topics, f"topic missing from kcat -L: {sorted(topics)}"
    t = topics["meta-topic"]
    assert not t.get("error"), t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2, 3]
    for p in t["partitions"]:
        assert p["leader"] == 1, p
        assert [r["id"] for r in p["replicas"]] == [1], p
        assert [r["id"] for r in p["isrs"]] == [1], p

    # The plain-text form names the topic too.
    plain = run_kcat(kcat, ["-b", broker.bootstrap, "-L", "-t", "meta-topic"]).stdout
    assert 'topic "meta-topic" with 4 partitions' in plain, plain
