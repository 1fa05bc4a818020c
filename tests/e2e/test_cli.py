"""The `strom` command line (topic, produce, consume, group, cluster, completions) against a
real broker.

Every test runs the binary the way a user would (argv, stdin, stdout, stderr, exit code)
and checks the result two ways: what the command printed (JSON parsed and compared exactly
where the contract fixes the shape; tables checked for their headers and values), and what
really happened on the broker, seen through an independent client (confluent-kafka).

Contract highlights checked here: exit codes 0 (ok) / 1 (operation failed) / 2 (usage
error) / 3 (cluster unreachable); errors on stderr starting with `error:`; `-o json` puts
exactly one JSON document on stdout (JSON lines for consume); global options before or
after the subcommand.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import (
    ANSI_RE,
    REPO,
    ck_admin,
    ck_consume,
    ck_consumer,
    ck_produce,
    ck_producer,
    create_topic,
    read_segment,
    segments,
    topic_metadata,
    wait_for_topic,
    wait_until,
    watermarks,
)

# Broker settings for these tests: a group's first rebalance need not wait 3 s for more
# members (this only makes `consume --group` quicker; nothing here depends on timing).
SETTINGS = {"group.initial.rebalance.delay.ms": "0"}

# Short client timeouts against an address nobody listens on (the contract's advice).
UNREACHABLE = "127.0.0.1:1"

# Upper bound for one CLI invocation, so that a hanging command fails the test instead of
# the whole suite. Not an assertion about speed.
CMD_TIMEOUT = 90


# --------------------------------------------------------------------------------------
# Running the CLI
# --------------------------------------------------------------------------------------


class Result:
    def __init__(self, argv, rc, out: str, err: str):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return (
            f"$ {' '.join(map(str, self.argv))}\nexit code: {self.rc}\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}\n------"
        )

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise AssertionError(f"stdout is not one JSON document ({e}):\n{self!r}") from None

    def json_lines(self) -> list:
        out = []
        for line in self.out.splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AssertionError(f"stdout line is not JSON ({e}): {line!r}\n{self!r}") from None
        return out

    def lines(self) -> list[str]:
        return self.out.splitlines()


def clean_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run_strom(binary, args, input=None, env=None, timeout=CMD_TIMEOUT) -> Result:
    argv = [str(binary), *map(str, args)]
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else clean_env(),
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        r = Result(argv, None, out.decode(errors="replace"), err.decode(errors="replace"))
        raise AssertionError(f"command did not exit within {timeout}s (killed)\n{r!r}") from None
    return Result(argv, proc.returncode, ANSI_RE.sub("", out.decode(errors="replace")), ANSI_RE.sub("", err.decode(errors="replace")))


class Cli:
    """Runs `strom --bootstrap <broker> ARGS...` and checks the exit code."""

    def __init__(self, binary: Path, bootstrap: str):
        self.binary = binary
        self.bootstrap = bootstrap

    def run(self, *args, input=None, expect: Optional[int] = 0, env=None, timeout=CMD_TIMEOUT, bootstrap=True) -> Result:
        full = (["--bootstrap", self.bootstrap] if bootstrap else []) + list(args)
        r = run_strom(self.binary, full, input=input, env=env, timeout=timeout)
        if expect is not None and r.rc != expect:
            hint = ""
            if r.rc == 2 and re.search(r"unrecognized subcommand|unexpected argument", r.err):
                hint = "(this strom binary does not know the command or one of its options yet)\n"
            raise AssertionError(f"expected exit code {expect}, got {r.rc}\n{hint}{r!r}")
        return r

    def json(self, *args, **kw):
        return self.run("-o", "json", *args, **kw).json()


def assert_error(r: Result, *needles: str):
    """An error: nothing on stdout, a message on stderr that starts with `error:` and
    mentions each needle (case-insensitive)."""
    assert r.out.strip() == "", f"an error must not print to stdout\n{r!r}"
    first = r.err.strip().splitlines()[0] if r.err.strip() else ""
    assert first.startswith("error:"), f"stderr must start with 'error:'\n{r!r}"
    for n in needles:
        assert n.lower() in r.err.lower(), f"the error message should mention {n!r}\n{r!r}"


# --------------------------------------------------------------------------------------
# Reading tables
# --------------------------------------------------------------------------------------

BORDER = set("-=+|─│┼━┃╋┌┐└┘├┤┬┴╭╮╰╯ ")


def cells(line: str) -> list[str]:
    return [c for c in re.split(r"[\s|│┃]+", ANSI_RE.sub("", line)) if c]


def table(out: str, *header: str) -> list[dict]:
    """Rows of the table whose header line starts with `header` (more columns may follow);
    each row is a dict of those header columns. The table ends at a blank line."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if cells(line)[: len(header)] == list(header):
            rows = []
            for row in lines[i + 1 :]:
                if not row.strip():
                    break
                if set(row.strip()) <= BORDER:
                    continue
                c = cells(row)
                rows.append({h: (c[j] if j < len(c) else None) for j, h in enumerate(header)} | {"_line": row})
            return rows
    raise AssertionError(f"no table with the header {' '.join(header)!r} in:\n{out}")


def line_with(out: str, *words: str) -> str:
    """The first line that contains every word as a whole cell."""
    for line in out.splitlines():
        c = cells(line)
        if all(w in c for w in words):
            return line
    raise AssertionError(f"no line with {words} in:\n{out}")


# --------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def srv(broker_factory):
    return broker_factory(SETTINGS)


@pytest.fixture
def cli(strom_bin, srv) -> Cli:
    return Cli(strom_bin, srv.bootstrap)


def topic_configs(bootstrap, topic) -> dict:
    admin = ck_admin(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def broker_configs(bootstrap, broker_id="1") -> dict:
    admin = ck_admin(bootstrap)
    resource = ConfigResource(ResourceType.BROKER, broker_id)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def topic_names(bootstrap) -> set:
    return set(topic_metadata(bootstrap).topics)


def commit(bootstrap, group, topic, offsets: dict):
    """Commit offsets {partition: offset} for a group without joining it."""
    c = ck_consumer(bootstrap, **{"group.id": group})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def committed(bootstrap, group, topic, partitions) -> dict:
    c = ck_consumer(bootstrap, **{"group.id": group})
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in partitions], timeout=30)}
    finally:
        c.close()


class LiveMember:
    """A confluent-kafka consumer that joins a group and keeps its membership (librdkafka
    heartbeats from its own thread) until closed."""

    def __init__(self, bootstrap, group, topic, client_id="cli-e2e-member"):
        from confluent_kafka import Consumer

        self.assigned = []
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": client_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 60000,
                "max.poll.interval.ms": 600000,
            }
        )
        self.consumer.subscribe([topic], on_assign=lambda c, ps: self.assigned.extend(ps))
        wait_until(lambda: self._poll() or self.assigned, 60, f"consumer to join group {group!r} and get partitions")

    def _poll(self):
        self.consumer.poll(0.2)
        return False

    def close(self):
        self.consumer.close()


def decode_field(v) -> Optional[bytes]:
    """A key/value/header from consume --format json: a string, {"base64": ...} or null."""
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode()
    assert isinstance(v, dict) and set(v) == {"base64"}, f"not a string, null or {{'base64': ...}}: {v!r}"
    return base64.b64decode(v["base64"])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def numbers_after(out: str, word: str) -> list:
    """For each line containing `word`, the integers that follow it on that line."""
    return [[int(x) for x in re.findall(r"(?<![\w.])-?\d+(?![\w.])", ln.split(word, 1)[1])] for ln in out.splitlines() if word in ln]


def rows_by(rows, col):
    return {r[col]: r for r in rows}


def json_config_value(doc, name):
    """The value of config `name` in `cluster config get -o json`, whose exact shape the
    contract leaves open: {name: value}, {name: {"value": ...}} or [{"name", "value", ...}]."""
    if isinstance(doc, dict) and "configs" in doc:
        doc = doc["configs"]
    if isinstance(doc, dict):
        v = doc.get(name)
        return v.get("value") if isinstance(v, dict) else v
    for entry in doc:
        if entry.get("name") == name:
            return entry.get("value")
    raise AssertionError(f"config {name!r} not in {doc!r}")


# --------------------------------------------------------------------------------------
# topic
# --------------------------------------------------------------------------------------


def test_topic_create_table_json_and_already_exists(cli, srv):
    """`topic create` makes the topic the broker then reports (partitions, configs), prints
    its name (table) or {"name","partitions","replication_factor"} (json), and a second
    create of the same name fails with exit 1 and says it already exists."""
    b = srv.bootstrap
    r = cli.run("topic", "create", "orders", "-p", "3")
    assert "orders" in r.out, r
    wait_for_topic(b, "orders", partitions=3)

    doc = cli.json(
        "topic", "create", "payments", "--partitions", "2", "--replication-factor", "1",
        "-c", "retention.ms=123456", "--config", "cleanup.policy=compact",
    )
    assert doc == {"name": "payments", "partitions": 2, "replication_factor": 1}
    wait_for_topic(b, "payments", partitions=2)
    configs = topic_configs(b, "payments")
    assert configs["retention.ms"].value == "123456"
    assert configs["cleanup.policy"].value == "compact"

    # without -p the broker's default (num.partitions=1)
    cli.run("topic", "create", "plain")
    wait_for_topic(b, "plain", partitions=1)

    r = cli.run("topic", "create", "orders", "-p", "3", expect=1)
    assert_error(r, "already exists", "orders")
    assert len(topic_metadata(b).topics["orders"].partitions) == 3


def test_topic_list_table_json_and_internal(cli, srv):
    """`topic list` shows user topics with partitions and replicas; the internal
    __consumer_offsets only with --internal, flagged internal in JSON."""
    b = srv.bootstrap
    create_topic(b, "alpha", 1)
    create_topic(b, "beta", 3)
    commit(b, "list-group", "alpha", {0: 0})  # makes the broker create __consumer_offsets
    wait_until(lambda: "__consumer_offsets" in topic_names(b), 30, "__consumer_offsets in metadata")

    rows = rows_by(table(cli.run("topic", "list").out, "NAME", "PARTITIONS", "REPLICAS"), "NAME")
    assert set(rows) == {"alpha", "beta"}, rows
    assert (rows["alpha"]["PARTITIONS"], rows["alpha"]["REPLICAS"]) == ("1", "1")
    assert (rows["beta"]["PARTITIONS"], rows["beta"]["REPLICAS"]) == ("3", "1")

    doc = cli.json("topic", "list")
    assert sorted(doc, key=lambda t: t["name"]) == [
        {"name": "alpha", "partitions": 1, "replication_factor": 1, "internal": False},
        {"name": "beta", "partitions": 3, "replication_factor": 1, "internal": False},
    ]

    doc = cli.json("topic", "list", "--internal")
    by_name = {t["name"]: t for t in doc}
    assert set(by_name) == {"alpha", "beta", "__consumer_offsets"}
    assert by_name["__consumer_offsets"]["internal"] is True
    assert by_name["__consumer_offsets"]["partitions"] == len(topic_metadata(b).topics["__consumer_offsets"].partitions)
    assert by_name["beta"] == {"name": "beta", "partitions": 3, "replication_factor": 1, "internal": False}

    rows = rows_by(table(cli.run("topic", "list", "--internal").out, "NAME", "PARTITIONS", "REPLICAS"), "NAME")
    assert set(rows) == {"alpha", "beta", "__consumer_offsets"}


def test_topic_describe_table_and_json(cli, srv):
    """`topic describe` reports per partition the leader, replicas, ISR, earliest/latest
    offsets (as ListOffsets sees them) and size (as stored on disk), plus only the configs
    that differ from the defaults."""
    b = srv.bootstrap
    create_topic(b, "described", 2, config={"retention.ms": "123456"})
    ck_produce(b, "described", [{"value": b"v%d" % i, "partition": 0} for i in range(3)] + [{"value": b"w", "partition": 1}])
    assert watermarks(b, "described", [0, 1]) == {0: (0, 3), 1: (0, 1)}
    leader = topic_metadata(b).topics["described"].partitions[0].leader

    doc = cli.json("topic", "describe", "described")
    assert {"name", "partitions", "configs"} <= set(doc), doc
    assert doc.get("replication_factor", 1) == 1, doc  # an extra summary field is fine, if right
    assert doc["name"] == "described"
    assert doc["configs"] == {"retention.ms": "123456"}
    parts = sorted(doc["partitions"], key=lambda p: p["partition"])
    sizes = {}
    for p in (0, 1):
        sizes[p] = sum(seg.stat().st_size for seg in segments(srv.partition_dir("described", p)))
    assert sizes[0] > 0 and sizes[1] > 0
    assert parts == [
        {"partition": 0, "leader": leader, "replicas": [leader], "isr": [leader], "status": "ok", "earliest": 0, "latest": 3, "size_bytes": sizes[0]},
        {"partition": 1, "leader": leader, "replicas": [leader], "isr": [leader], "status": "ok", "earliest": 0, "latest": 1, "size_bytes": sizes[1]},
    ]

    out = cli.run("topic", "describe", "described").out
    assert "described" in out
    assert re.search(r"(?im)^.*partitions\W+2\b", out), f"summary should give the partition count\n{out}"
    assert re.search(r"(?im)^.*replication[ _-]?factor\W+1\b", out), f"summary should give the replication factor\n{out}"
    assert re.search(r"(?i)configs", out), f"no configs section\n{out}"
    cfg_line = next((ln for ln in out.splitlines() if "retention.ms" in ln), None)
    assert cfg_line and "123456" in cfg_line, f"retention.ms=123456 not shown\n{out}"
    rows = rows_by(table(out, "PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "LATEST", "SIZE", "STATUS"), "PARTITION")
    assert set(rows) == {"0", "1"}, rows
    assert rows["0"]["STATUS"] == rows["1"]["STATUS"] == "ok"
    assert (rows["0"]["LEADER"], rows["0"]["EARLIEST"], rows["0"]["LATEST"]) == (str(leader), "0", "3")
    assert (rows["1"]["LEADER"], rows["1"]["EARLIEST"], rows["1"]["LATEST"]) == (str(leader), "0", "1")
    # only non-default configs: a default like segment.bytes must not be listed
    assert "segment.bytes" not in out, f"default configs should not be listed\n{out}"


def test_topic_delete_one_or_many(cli, srv):
    """`topic delete A B` deletes exactly those topics (exit 0); deleting a topic that does
    not exist is exit 1 naming it."""
    b = srv.bootstrap
    for t in ("del-x", "del-y", "del-z"):
        create_topic(b, t, 1)
    cli.run("topic", "delete", "del-x", "del-y")
    wait_until(lambda: not ({"del-x", "del-y"} & topic_names(b)), 30, "deleted topics gone from metadata")
    assert "del-z" in topic_names(b)

    r = cli.run("topic", "delete", "del-nope", expect=1)
    assert_error(r, "del-nope")
    assert "del-nope" not in topic_names(b)


def test_topic_alter_config_set_and_delete_only_touch_named_keys(cli, srv):
    """`topic alter-config --set/--delete` changes only the keys named (incremental, the
    others keep their values); a bad value is exit 1 with the broker's message and
    changes nothing."""
    b = srv.bootstrap
    create_topic(b, "tuned", 1, config={"retention.ms": "100000", "max.message.bytes": "5000"})

    cli.run("topic", "alter-config", "tuned", "--set", "retention.ms=200000", "--set", "segment.ms=3600000")
    c = topic_configs(b, "tuned")
    assert (c["retention.ms"].value, c["segment.ms"].value, c["max.message.bytes"].value) == ("200000", "3600000", "5000")

    cli.run("topic", "alter-config", "tuned", "--set", "retention.ms=300000", "--delete", "max.message.bytes")
    c = topic_configs(b, "tuned")
    assert c["retention.ms"].value == "300000"
    assert c["segment.ms"].value == "3600000", "a key not named was changed"
    assert c["max.message.bytes"].is_default, "--delete should return the key to its default"

    doc = cli.json("topic", "describe", "tuned")
    assert doc["configs"] == {"retention.ms": "300000", "segment.ms": "3600000"}

    r = cli.run("topic", "alter-config", "tuned", "--set", "retention.ms=soon", expect=1)
    assert_error(r, "retention.ms", "soon")  # the broker's message names the key and the value
    assert topic_configs(b, "tuned")["retention.ms"].value == "300000"

    r = cli.run("topic", "alter-config", "tuned", "--set", "no.such.config=1", expect=1)
    assert_error(r, "no.such.config")


def test_topic_add_partitions(cli, srv):
    """`topic add-partitions T --num N` adds N partitions to those the topic has; the new
    ones are usable at once."""
    b = srv.bootstrap
    create_topic(b, "growing", 2)
    cli.run("topic", "add-partitions", "growing", "--num", "3")
    wait_for_topic(b, "growing", partitions=5)
    ck_produce(b, "growing", [{"value": b"new", "partition": 4}])
    assert len(cli.json("topic", "describe", "growing")["partitions"]) == 5

    r = cli.run("topic", "add-partitions", "no-such-topic", "--num", "1", expect=1)
    assert_error(r, "no-such-topic")


# --------------------------------------------------------------------------------------
# produce
# --------------------------------------------------------------------------------------


def test_produce_text_with_key_separator_headers_and_verbose(cli, srv):
    """Each stdin line is one record; the key is the text before the FIRST separator;
    every --header k=v goes on every record (split at the first '='); -v prints
    `partition P offset O` per record on stdout, and a summary goes to stderr."""
    b = srv.bootstrap
    create_topic(b, "text", 1)
    r = cli.run(
        "produce", "text", "--key-separator", ":", "--header", "src=cli", "--header", "trace=a=b", "-v",
        input="alice:hello\nbob:hi: there\ncarol:x\n",
    )
    assert r.lines() == ["partition 0 offset 0", "partition 0 offset 1", "partition 0 offset 2"], r
    assert re.search(r"produced 3 records to text\b", r.err), r
    recs = ck_consume(b, "text", [0], expected=3)
    assert [(x.key, x.value) for x in recs] == [(b"alice", b"hello"), (b"bob", b"hi: there"), (b"carol", b"x")]
    for x in recs:
        assert x.headers == (("src", b"cli"), ("trace", b"a=b")), x

    # without a separator the whole line is the value and there is no key; no -v, no stdout
    r = cli.run("produce", "text", input="just a value\nkey:not split\n")
    assert r.out == "", f"without -v produce prints nothing on stdout\n{r!r}"
    assert re.search(r"produced 2 records to text\b", r.err), r
    recs = ck_consume(b, "text", [0], expected=5)[3:]
    assert [(x.key, x.value) for x in recs] == [(None, b"just a value"), (None, b"key:not split")]

    # the last line counts even without a final newline
    r = cli.run("produce", "text", input="tail-1\ntail-2")
    assert re.search(r"produced 2 records to text\b", r.err), r
    assert [x.value for x in ck_consume(b, "text", [0], expected=7)[5:]] == [b"tail-1", b"tail-2"]


def test_produce_from_file_to_a_partition_with_each_compression(cli, srv, tmp_path):
    """--file reads records from a file; --partition puts them all on that partition;
    --compression reaches the wire: the stored batches carry that codec (Strom stores
    batches as produced)."""
    b = srv.bootstrap
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    create_topic(b, "packed", len(codecs))
    lines = ["record %03d %s" % (i, "abcdefgh" * 16) for i in range(50)]  # compressible
    f = tmp_path / "records.txt"
    f.write_text("\n".join(lines) + "\n")
    for p, codec in enumerate(codecs):
        r = cli.run("produce", "packed", "--file", str(f), "--partition", str(p), "--compression", codec)
        assert re.search(r"produced 50 records to packed\b", r.err), r
    assert watermarks(b, "packed", range(len(codecs))) == {p: (0, 50) for p in range(len(codecs))}
    want = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    for p, codec in enumerate(codecs):
        batches = [batch for seg in segments(srv.partition_dir("packed", p)) for batch in read_segment(seg)]
        assert batches and {batch.codec for batch in batches} == {want[codec]}, (codec, [batch.codec for batch in batches])
        recs = ck_consume(b, "packed", [p], expected=50)
        assert [x.value.decode() for x in recs] == lines


@pytest.mark.parametrize("acks", ["all", "1", "0"])
def test_produce_acks(cli, srv, acks):
    """--acks all|1|0 are accepted and the records arrive."""
    b = srv.bootstrap
    create_topic(b, "acked", 1)
    cli.run("produce", "acked", "--acks", acks, input="a\nb\nc\n")
    wait_until(lambda: watermarks(b, "acked", [0])[0] == (0, 3), 30, "3 records in the log")


def test_produce_json_lines(cli, srv):
    """--format json: each line an object with value and optional key, headers and
    partition."""
    b = srv.bootstrap
    create_topic(b, "jsonin", 2)
    lines = [
        {"value": "v1"},
        {"key": "k2", "value": "v2", "headers": {"h": "x", "g": "y"}, "partition": 1},
        {"key": "k3", "value": "v3", "partition": 0},
        {"value": "v4 {\"nested\": true}", "partition": 1},
    ]
    r = cli.run("produce", "jsonin", "--format", "json", "-v", input="".join(json.dumps(x) + "\n" for x in lines))
    reported = [re.fullmatch(r"partition (\d+) offset (\d+)", ln) for ln in r.lines()]
    assert len(reported) == 4 and all(reported), f"-v prints `partition P offset O` per record\n{r!r}"
    reported = [(int(m.group(1)), int(m.group(2))) for m in reported]
    assert [p for p, _ in reported[1:]] == [1, 0, 1], r
    recs = ck_consume(b, "jsonin", [0, 1], expected=4)
    got = {x.value: x for x in recs}
    assert got[b"v1"].key is None
    assert (got[b"v2"].key, got[b"v2"].partition, dict(got[b"v2"].headers)) == (b"k2", 1, {"h": b"x", "g": b"y"})
    assert (got[b"v3"].key, got[b"v3"].partition, got[b"v3"].headers) == (b"k3", 0, ())
    assert got[b'v4 {"nested": true}'].partition == 1
    for line, (p, o) in zip(lines, reported):
        assert (got[line["value"].encode()].partition, got[line["value"].encode()].offset) == (p, o), "-v reports where it went"


def test_produce_to_unknown_topic_without_auto_creation_fails(strom_bin, broker_factory):
    """With auto.create.topics.enable=false, producing to a missing topic is exit 1 with
    an error naming the topic, and creates nothing."""
    b = broker_factory({"auto.create.topics.enable": "false"}).bootstrap
    cli = Cli(strom_bin, b)
    r = cli.run("produce", "missing", input="x\n", expect=1)
    assert_error(r, "missing")
    assert "missing" not in topic_names(b)


def test_produce_json_line_without_value_is_refused(cli, srv):
    """In --format json input only "value" is required: a line without it is an error
    (non-zero exit, `error:` message) and nothing is produced."""
    b = srv.bootstrap
    create_topic(b, "needvalue", 1)
    r = cli.run("produce", "needvalue", "--format", "json", input='{"key": "k"}\n', expect=None)
    assert r.rc in (1, 2), f"a JSON line without value must be refused\n{r!r}"
    assert_error(r, "value")
    assert watermarks(b, "needvalue", [0])[0] == (0, 0)


def test_produce_verbose_with_json_output_keeps_stdout_json(cli, srv):
    """With -o json, stdout is JSON only, also with -v: either one JSON document or JSON
    lines, never the table-style `partition P offset O` text mixed in."""
    create_topic(srv.bootstrap, "pv", 1)
    r = cli.run("-o", "json", "produce", "pv", "-v", input="a\nb\n")
    try:
        r.json()
    except AssertionError:
        r.json_lines()  # raises with the offending line


def test_produce_and_consume_many_records(cli, srv):
    """150,000 lines (more than librdkafka's default producer queue of 100,000 messages)
    all arrive in order, and `consume` prints every one of them before it exits."""
    b = srv.bootstrap
    create_topic(b, "bulk", 1)
    n = 150_000
    data = "".join(f"{i}\n" for i in range(n))
    r = cli.run("produce", "bulk", input=data, timeout=300)
    assert re.search(rf"produced {n} records to bulk\b", r.err), r
    assert watermarks(b, "bulk", [0])[0] == (0, n)
    r = cli.run("consume", "bulk", timeout=300)
    assert r.out == data, f"consume printed {len(r.lines())} lines, want {n}"


def test_produce_and_consume_a_partition_that_does_not_exist(cli, srv):
    """--partition beyond the topic's partitions is exit 1 naming the problem, for produce
    and consume."""
    create_topic(srv.bootstrap, "onep", 1)
    r = cli.run("produce", "onep", "--partition", "5", input="x\n", expect=1)
    assert_error(r, "partition")
    r = cli.run("consume", "onep", "--partition", "5", expect=1)
    assert_error(r, "5")
    assert watermarks(srv.bootstrap, "onep", [0])[0] == (0, 0)


def test_produce_auto_creates_a_topic_when_the_broker_allows(cli, srv):
    """With the default auto.create.topics.enable=true, producing to a new topic creates it
    (as with any Kafka producer)."""
    b = srv.bootstrap
    cli.run("produce", "brand-new", input="first\n")
    recs = ck_consume(b, "brand-new", [0], expected=1)
    assert recs[0].value == b"first"


# --------------------------------------------------------------------------------------
# consume
# --------------------------------------------------------------------------------------


def test_consume_formats_value_kv_and_json(cli, srv):
    """Default --format value prints one value per line and nothing else on stdout; kv
    prints key<TAB>value (or the given --key-separator); json prints one object per record
    with exactly topic, partition, offset, timestamp, key, value, headers."""
    b = srv.bootstrap
    create_topic(b, "fmt", 1)
    produced = ck_produce(
        b, "fmt",
        [
            {"key": b"k0", "value": b"v0"},
            {"key": b"k1", "value": b"hello world", "headers": [("h1", b"x"), ("h2", b"y")]},
            {"key": b"k2", "value": "grüße ✓".encode()},
        ],
    )

    r = cli.run("consume", "fmt")
    assert r.out == "v0\nhello world\ngrüße ✓\n", r
    r = cli.run("consume", "fmt", "--format", "kv")
    assert r.out == "k0\tv0\nk1\thello world\nk2\tgrüße ✓\n", r
    r = cli.run("consume", "fmt", "--format", "kv", "--key-separator", "=")
    assert r.out == "k0=v0\nk1=hello world\nk2=grüße ✓\n", r

    docs = cli.run("consume", "fmt", "--format", "json").json_lines()
    assert docs == [
        {"topic": "fmt", "partition": 0, "offset": 0, "timestamp": produced[0].timestamp, "key": "k0", "value": "v0", "headers": {}},
        {"topic": "fmt", "partition": 0, "offset": 1, "timestamp": produced[1].timestamp, "key": "k1", "value": "hello world",
         "headers": {"h1": "x", "h2": "y"}},
        {"topic": "fmt", "partition": 0, "offset": 2, "timestamp": produced[2].timestamp, "key": "k2", "value": "grüße ✓", "headers": {}},
    ]
    # -o json (the global output option) does not disturb JSON lines either
    assert cli.run("-o", "json", "consume", "fmt", "--format", "json").json_lines() == docs


def test_consume_json_shows_binary_as_base64_and_null_key_as_null(cli, srv):
    """Keys/values that are not valid UTF-8 come out as {"base64": ...} and decode back to
    the exact bytes produced; a null key is JSON null."""
    b = srv.bootstrap
    create_topic(b, "binary", 1)
    blob = bytes(range(256))
    ck_produce(
        b, "binary",
        [
            {"key": b"\xff\x00\xfe", "value": blob, "headers": [("bin", b"\x80\x81"), ("txt", b"ok")]},
            {"key": None, "value": b"plain"},
        ],
    )
    docs = cli.run("consume", "binary", "--format", "json").json_lines()
    assert len(docs) == 2, docs
    first, second = docs
    assert first["key"] == {"base64": base64.b64encode(b"\xff\x00\xfe").decode()}
    assert first["value"] == {"base64": base64.b64encode(blob).decode()}
    assert decode_field(first["value"]) == blob
    assert decode_field(first["headers"]["bin"]) == b"\x80\x81"
    assert first["headers"]["txt"] == "ok"
    assert second["key"] is None and second["value"] == "plain"


def produce_timed(b, topic):
    """p0: 5 records at base+0,1,2,3,4 s; p1: 3 records at base+0,2,4 s. Returns base."""
    base = int(time.time() * 1000) - 600_000
    recs = [{"value": b"p0-%d" % i, "key": b"k", "partition": 0, "timestamp": base + 1000 * i} for i in range(5)]
    recs += [{"value": b"p1-%d" % i, "key": b"k", "partition": 1, "timestamp": base + 2000 * i} for i in range(3)]
    ck_produce(b, topic, recs)
    return base


def positions(r: Result) -> list:
    return [(d["partition"], d["offset"]) for d in r.json_lines()]


def test_consume_from_positions_partitions_and_count(cli, srv):
    """--from beginning|end|OFFSET|@TIMESTAMP_MS|-N, --partition (repeatable) and --count
    select exactly the records Kafka's offset semantics say; without --follow the command
    exits at the end of every partition."""
    b = srv.bootstrap
    create_topic(b, "pos", 2)
    base = produce_timed(b, "pos")

    def consumed(*args):
        r = cli.run("consume", "pos", "--format", "json", *args)
        return sorted(positions(r))

    assert consumed() == [(0, i) for i in range(5)] + [(1, i) for i in range(3)]
    assert consumed("--from", "beginning") == consumed()
    assert consumed("--no-follow") == consumed()
    assert consumed("--from", "end") == []
    assert consumed("--from", "-2") == [(0, 3), (0, 4), (1, 1), (1, 2)]
    assert consumed("--from", "-10") == consumed(), "more than a partition holds: all of it"
    assert consumed("--from", "3", "--partition", "0") == [(0, 3), (0, 4)]
    assert consumed("--from", "1") == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    assert consumed("--from", f"@{base + 2000}") == [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    assert consumed("--from", f"@{base + 1500}", "--partition", "0") == [(0, 2), (0, 3), (0, 4)]
    assert consumed("--partition", "1") == [(1, 0), (1, 1), (1, 2)]
    assert consumed("--partition", "0", "--partition", "1") == consumed()

    r = cli.run("consume", "pos", "--partition", "0", "--count", "3")
    assert r.lines() == ["p0-0", "p0-1", "p0-2"], r
    r = cli.run("consume", "pos", "--count", "3", "--format", "json")
    assert len(r.json_lines()) == 3, r
    r = cli.run("consume", "pos", "--from", "-1", "--partition", "1")
    assert r.lines() == ["p1-2"], r

    for iso in ("read_committed", "read_uncommitted"):
        assert cli.run("consume", "pos", "--isolation", iso, "--partition", "0").lines() == [f"p0-{i}" for i in range(5)]


def test_consume_empty_topic_exits_with_nothing(cli, srv):
    """Without --follow, consuming an empty topic ends at once with exit 0 and no output."""
    create_topic(srv.bootstrap, "empty", 3)
    r = cli.run("consume", "empty")
    assert r.out == "", r


class LineReader:
    """Reads a process's stdout lines on a thread."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            self.q.put(raw.decode(errors="replace").rstrip("\n"))
        self.q.put(None)

    def take(self, n, timeout=60) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"got {len(out)} of {n} lines within {timeout}s: {out}") from None
            if line is None:
                raise AssertionError(f"stdout closed after {len(out)} of {n} lines: {out}")
            out.append(line)
        return out


def spawn(cli: Cli, *args, env=None):
    return subprocess.Popen(
        [str(cli.binary), "--bootstrap", cli.bootstrap, *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or clean_env(),
    )


def stop(proc, sig=signal.SIGINT, timeout=30):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"strom did not exit within {timeout}s of {sig!r}")
    return proc.returncode


def test_consume_follow_sees_new_records_and_count_ends_it(cli, srv):
    """--follow keeps reading after the end: records produced later are printed; with
    --count N it exits 0 after N records."""
    b = srv.bootstrap
    create_topic(b, "tail", 1)
    ck_produce(b, "tail", [{"value": b"old-1"}, {"value": b"old-2"}])
    proc = spawn(cli, "consume", "tail", "--follow", "--count", "4")
    try:
        lines = LineReader(proc.stdout)
        assert lines.take(2) == ["old-1", "old-2"]
        assert proc.poll() is None, "--follow must not exit at the end of the partition"
        ck_produce(b, "tail", [{"value": b"new-1"}, {"value": b"new-2"}])
        assert lines.take(2) == ["new-1", "new-2"]
        assert proc.wait(60) == 0, proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_consume_group_commits_and_resumes(cli, srv):
    """--group G consumes as group G and commits: `group describe` then shows lag 0 with
    committed == log end (also seen by confluent-kafka), and the next run of the same group
    resumes after what it already read."""
    b = srv.bootstrap
    create_topic(b, "grouped", 2)
    ck_produce(b, "grouped", [{"value": b"a%d" % i, "partition": i % 2} for i in range(5)])

    r = cli.run("consume", "grouped", "--group", "g1")
    assert sorted(r.lines()) == ["a0", "a1", "a2", "a3", "a4"], r
    assert committed(b, "g1", "grouped", [0, 1]) == {0: 3, 1: 2}

    doc = cli.json("group", "describe", "g1")
    assert set(doc) == {"group", "state", "members", "offsets", "total_lag"}, doc
    assert doc["group"] == "g1" and doc["members"] == [] and doc["total_lag"] == 0
    assert doc["state"].lower() == "empty"
    assert sorted(doc["offsets"], key=lambda o: o["partition"]) == [
        {"topic": "grouped", "partition": 0, "committed": 3, "end": 3, "lag": 0},
        {"topic": "grouped", "partition": 1, "committed": 2, "end": 2, "lag": 0},
    ]

    ck_produce(b, "grouped", [{"value": b"b%d" % i, "partition": i % 2} for i in range(3)])
    assert cli.json("group", "describe", "g1")["total_lag"] == 3
    r = cli.run("consume", "grouped", "--group", "g1")
    assert sorted(r.lines()) == ["b0", "b1", "b2"], f"the group should resume from its committed offsets\n{r!r}"
    assert committed(b, "g1", "grouped", [0, 1]) == {0: 5, 1: 3}
    assert cli.json("group", "describe", "g1")["total_lag"] == 0


def test_consume_unknown_topic_fails_without_creating_it(cli, srv):
    """Consuming a topic that does not exist is exit 1 naming the topic, and does not
    create it (even though the broker auto-creates topics for producers)."""
    r = cli.run("consume", "no-such-topic", expect=1)
    assert_error(r, "no-such-topic")
    assert "no-such-topic" not in topic_names(srv.bootstrap)


# --------------------------------------------------------------------------------------
# group
# --------------------------------------------------------------------------------------


def test_group_list_table_and_json(cli, srv):
    """`group list` shows every group with its state and type: an empty group with only
    committed offsets, and one with a live member."""
    b = srv.bootstrap
    create_topic(b, "gl", 2)
    commit(b, "g-empty", "gl", {0: 0})
    member = LiveMember(b, "g-live", "gl")
    try:
        def live_is_stable():
            return {g["group"]: g["state"].lower() for g in cli.json("group", "list")}.get("g-live") == "stable"

        wait_until(live_is_stable, 60, "g-live Stable in group list")
        doc = cli.json("group", "list")
        norm = sorted(({k: str(v).lower() if k != "group" else v for k, v in g.items()} for g in doc), key=lambda g: g["group"])
        assert norm == [
            {"group": "g-empty", "state": "empty", "type": "classic"},
            {"group": "g-live", "state": "stable", "type": "classic"},
        ], doc
        rows = rows_by(table(cli.run("group", "list").out, "GROUP", "STATE", "TYPE"), "GROUP")
        assert set(rows) == {"g-empty", "g-live"}
        assert rows["g-live"]["STATE"].lower() == "stable" and rows["g-empty"]["STATE"].lower() == "empty"
        assert rows["g-live"]["TYPE"].lower() == "classic"
    finally:
        member.close()


def test_group_describe_lag_and_members(cli, srv):
    """`group describe` gives committed offset, log end offset and lag per partition and
    the total lag (table and JSON), and lists live members with client id and their
    assigned partitions."""
    b = srv.bootstrap
    create_topic(b, "lagging", 2)
    ck_produce(b, "lagging", [{"value": b"x", "partition": 0}] * 3 + [{"value": b"y", "partition": 1}] * 2)
    commit(b, "g-lag", "lagging", {0: 1, 1: 2})

    doc = cli.json("group", "describe", "g-lag")
    assert doc["group"] == "g-lag" and doc["state"].lower() == "empty" and doc["members"] == []
    assert sorted(doc["offsets"], key=lambda o: o["partition"]) == [
        {"topic": "lagging", "partition": 0, "committed": 1, "end": 3, "lag": 2},
        {"topic": "lagging", "partition": 1, "committed": 2, "end": 2, "lag": 0},
    ]
    assert doc["total_lag"] == 2

    out = cli.run("group", "describe", "g-lag").out
    assert "g-lag" in out
    rows = numbers_after(out, "lagging")
    assert any(r[:4] == [0, 1, 3, 2] for r in rows), f"want a row: lagging 0 committed 1, end 3, lag 2\n{out}"
    assert any(r[:4] == [1, 2, 2, 0] for r in rows), f"want a row: lagging 1 committed 2, end 2, lag 0\n{out}"
    assert re.search(r"(?i)total.*\b2\b", out), f"total lag 2 not shown\n{out}"

    member = LiveMember(b, "g-lag", "lagging", client_id="describe-me")
    try:
        def described():
            d = cli.json("group", "describe", "g-lag")
            return d if d["state"].lower() == "stable" and len(d["members"]) == 1 else None

        d = wait_until(described, 60, "g-lag Stable with one member")
        m = json.dumps(d["members"][0])
        assert "describe-me" in m, f"member should show its client id: {d['members']}"
        assert "lagging" in m, f"member should show its assigned partitions: {d['members']}"
        out = cli.run("group", "describe", "g-lag").out
        assert "describe-me" in out, out
    finally:
        member.close()


def test_group_delete(cli, srv):
    """`group delete G...` deletes empty groups (they vanish from the list and lose their
    offsets); a group with a live member is refused with exit 1."""
    b = srv.bootstrap
    create_topic(b, "gd", 1)
    commit(b, "gd-1", "gd", {0: 0})
    commit(b, "gd-2", "gd", {0: 0})
    commit(b, "gd-keep", "gd", {0: 0})
    cli.run("group", "delete", "gd-1", "gd-2")
    groups = {g["group"] for g in cli.json("group", "list")}
    assert "gd-1" not in groups and "gd-2" not in groups and "gd-keep" in groups, groups

    member = LiveMember(b, "gd-live", "gd")
    try:
        r = cli.run("group", "delete", "gd-live", expect=1)
        assert_error(r)
        assert re.search(r"(?i)gd-live|not empty|member", r.err), f"the message should say the group has members\n{r!r}"
        assert "gd-live" in {g["group"] for g in cli.json("group", "list")}
    finally:
        member.close()


def test_group_reset_offsets_dry_run_and_execute(cli, srv):
    """reset-offsets without --execute prints the plan (current -> new per partition) and
    changes nothing; with --execute it commits earliest / latest / offset:N / shift:N /
    timestamp:MS as Kafka's tool does; a group with live members is refused."""
    b = srv.bootstrap
    create_topic(b, "rewind", 2)
    base = produce_timed(b, "rewind")  # p0: 5 records, p1: 3 records
    commit(b, "g-reset", "rewind", {0: 4, 1: 1})

    r = cli.run("group", "reset-offsets", "g-reset", "--topic", "rewind", "--to", "earliest")
    rows = numbers_after(r.out, "rewind") + [numbers_after(" " + ln, " ")[0] for ln in r.lines() if re.match(r"\s*\d", ln)]
    for part, cur, new in ((0, 4, 0), (1, 1, 0)):
        assert any(row[:3] == [part, cur, new] for row in rows), f"plan should show partition {part}: {cur} -> {new}\n{r!r}"
    assert committed(b, "g-reset", "rewind", [0, 1]) == {0: 4, 1: 1}, "a dry run must change nothing"

    def reset(to):
        cli.run("group", "reset-offsets", "g-reset", "--topic", "rewind", "--to", to, "--execute")
        return committed(b, "g-reset", "rewind", [0, 1])

    assert reset("earliest") == {0: 0, 1: 0}
    assert reset("latest") == {0: 5, 1: 3}
    assert reset("offset:2") == {0: 2, 1: 2}
    assert reset("shift:-1") == {0: 1, 1: 1}
    assert reset("shift:1") == {0: 2, 1: 2}
    assert reset(f"timestamp:{base + 2000}") == {0: 2, 1: 1}
    doc = cli.json("group", "describe", "g-reset")
    assert sorted((o["partition"], o["committed"], o["lag"]) for o in doc["offsets"]) == [(0, 2, 3), (1, 1, 2)]

    member = LiveMember(b, "g-reset", "rewind")
    try:
        r = cli.run("group", "reset-offsets", "g-reset", "--topic", "rewind", "--to", "earliest", "--execute", expect=1)
        assert_error(r)
        assert re.search(r"(?i)member|active|empty|stable", r.err), f"the message should say the group is active\n{r!r}"
    finally:
        member.close()
    assert committed(b, "g-reset", "rewind", [0, 1]) == {0: 2, 1: 1}


# --------------------------------------------------------------------------------------
# cluster
# --------------------------------------------------------------------------------------


def test_transaction_list_and_describe(cli, srv):
    """`transaction list` and `transaction describe` show an open transaction (its producer,
    epoch, timeout and partitions), filter by state, and after the commit show it complete
    with no partitions; an unknown id is an error (exit 1)."""
    b = srv.bootstrap
    create_topic(b, "tx-cli", 2)
    producer = ck_producer(b, **{"transactional.id": "cli-tx", "enable.idempotence": True,
                                 "transaction.timeout.ms": 45000})
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition in (0, 1):
        producer.produce("tx-cli", value=b"v", partition=partition)
    assert producer.flush(30) == 0

    listed = cli.json("transaction", "list")
    assert [(t["transactional_id"], t["state"]) for t in listed] == [("cli-tx", "Ongoing")], listed
    assert cli.json("transaction", "list", "--state", "CompleteCommit") == []
    (described,) = cli.json("transaction", "describe", "cli-tx")
    assert described["producer_id"] == listed[0]["producer_id"]
    assert described["state"] == "Ongoing" and described["timeout_ms"] == 45000
    assert sorted(described["partitions"]) == ["tx-cli-0", "tx-cli-1"]
    assert described["start_time_ms"] > 0
    rows = rows_by(table(cli.run("transaction", "describe", "cli-tx").out, "TRANSACTIONAL_ID", "PRODUCER"),
                   "TRANSACTIONAL_ID")
    assert rows["cli-tx"]["PRODUCER"] == str(described["producer_id"])

    producer.commit_transaction(30)
    (done,) = cli.json("transaction", "describe", "cli-tx")
    assert done["state"] == "CompleteCommit" and done["partitions"] == [], done
    rows = rows_by(table(cli.run("transaction", "list", "--state", "CompleteCommit").out, "TRANSACTIONAL_ID",
                         "PRODUCER", "STATE"), "TRANSACTIONAL_ID")
    assert rows["cli-tx"]["STATE"] == "CompleteCommit"

    r = cli.run("transaction", "describe", "no-such-tx", expect=1)
    assert_error(r, "no-such-tx")
    r = cli.run("transaction", "list", "--state", "Sleeping", expect=2)
    assert_error(r, "Sleeping")


def test_idle_transactional_ids_expire_and_stay_gone_after_a_restart(strom_bin, broker_factory):
    """A transactional id unused for transactional.id.expiration.ms between transactions is
    removed (a tombstone in __transaction_state, so a restart does not bring it back); one with
    a transaction open is kept; the id can be used again afterwards."""
    srv = broker_factory({**SETTINGS, "transactional.id.expiration.ms": "2000",
                          "transaction.remove.expired.transaction.cleanup.interval.ms": "200"})
    srv.keep_port()  # the open transaction's producer commits after the restart
    cli = Cli(strom_bin, srv.bootstrap)
    create_topic(srv.bootstrap, "exp", 1)

    def producer(transactional_id):
        p = ck_producer(srv.bootstrap, **{"transactional.id": transactional_id, "enable.idempotence": True})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce("exp", value=transactional_id.encode(), partition=0)
        assert p.flush(30) == 0
        return p

    idle = producer("idle-id")
    idle.commit_transaction(30)
    busy = producer("busy-id")  # its transaction stays open
    listed = lambda: sorted(t["transactional_id"] for t in cli.json("transaction", "list"))
    assert listed() == ["busy-id", "idle-id"]
    wait_until(lambda: listed() == ["busy-id"], timeout=30, what="the idle transactional id to expire")
    srv.restart()
    cli = Cli(strom_bin, srv.bootstrap)
    # The state was replayed (the open transaction is back) and the removal with it.
    assert listed() == ["busy-id"], "after the restart"
    busy.commit_transaction(30)
    again = producer("idle-id")
    again.commit_transaction(30)
    assert "idle-id" in listed()


def test_transaction_describe_producers_and_producer_id_expiry(strom_bin, broker_factory):
    """`transaction describe-producers` shows what each partition remembers of its producers:
    an idempotent one with its last sequence, a transactional one with the first offset of its
    open transaction. After producer.id.expiration.ms without a batch the idle producer is
    forgotten, the one with an open transaction is not until that transaction ends."""
    srv = broker_factory({**SETTINGS, "producer.id.expiration.ms": "3000",
                          "producer.id.expiration.check.interval.ms": "200"})
    cli = Cli(strom_bin, srv.bootstrap)
    b = srv.bootstrap
    create_topic(b, "ids", 2)
    idempotent = ck_producer(b, **{"enable.idempotence": True})
    for i in range(10):
        idempotent.produce("ids", value=b"%d" % i, partition=0)
    assert idempotent.flush(30) == 0
    transactional = ck_producer(b, **{"transactional.id": "ids-tx", "enable.idempotence": True})
    transactional.init_transactions(30)
    transactional.begin_transaction()
    transactional.produce("ids", value=b"open", partition=1)
    assert transactional.flush(30) == 0

    rows = cli.json("transaction", "describe-producers", "--topic", "ids")
    by_partition = {row["partition"]: row for row in rows}
    assert sorted(by_partition) == [0, 1] and len(rows) == 2, rows
    assert by_partition[0]["last_sequence"] == 9 and by_partition[0]["transaction_start_offset"] == -1
    assert by_partition[1]["transaction_start_offset"] == 0
    assert abs(by_partition[0]["last_timestamp_ms"] - time.time() * 1000) < 60_000
    table_rows = table(cli.run("transaction", "describe-producers", "--topic", "ids", "--partition", "1").out,
                       "PARTITION", "PRODUCER", "EPOCH", "LAST_SEQUENCE", "LAST_TIMESTAMP_MS", "TXN_START_OFFSET")
    assert [(r["PARTITION"], r["TXN_START_OFFSET"]) for r in table_rows] == [("1", "0")]

    def partitions_remembered():
        return sorted(row["partition"] for row in cli.json("transaction", "describe-producers", "--topic", "ids"))

    wait_until(lambda: partitions_remembered() == [1], timeout=30, what="the idle producer to expire")
    transactional.commit_transaction(30)
    wait_until(lambda: partitions_remembered() == [], timeout=30, what="the producer whose transaction ended to expire")

    r = cli.run("transaction", "describe-producers", "--topic", "no-such-topic", expect=1)
    assert_error(r, "no-such-topic")


def test_bench_produces_consumes_and_reports_latencies_and_broker_usage(cli, srv):
    r = cli.json("bench", "--topic", "bench", "--partitions", "3", "--records", "3000", "--record-size", "200",
                 "--consumers", "1", "--broker-pid", str(srv.proc.pid), timeout=120)
    assert (r["records"], r["failed"], r["consumed"]) == (3000, 0, 3000), r
    assert r["megabytes_per_second"] > 0 and r["records_per_second"] > 0
    for key in ("produce_latency_ms", "end_to_end_latency_ms"):
        latency = r[key]
        assert latency["count"] == 3000, r
        assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"], r
    assert r["broker"]["peak_rss_bytes"] > 0 and r["broker"]["cpu_seconds"] >= 0, r

    # What was produced is there: consumers splitting the partitions read every record once.
    for consumers in (1, 2):
        c = cli.json("bench", "--topic", "bench", "--consume-only", "--consumers", str(consumers), timeout=120)
        assert (c["records"], c["consumers"]) == (3000, consumers), c
    assert_error(cli.run("bench", "--topic", "no-such-topic", "--consume-only", expect=1), "no-such-topic")


def test_bench_limits_with_a_rate_measure_durable_write_latency(strom_bin, tmp_path):
    r = run_strom(strom_bin, ["-o", "json", "bench", "--limits", "--data-dir", tmp_path, "--rate", "2000",
                              "--partitions", "2", "--record-size", "512", "--duration", "2s"], timeout=300)
    assert r.rc == 0, r
    doc = r.json()
    assert doc["loopback_tcp_megabytes_per_second"] > 0 and doc["fdatasync_write_megabytes_per_second"] > 0
    durable = doc["durable_write"]
    assert (durable["files"], durable["record_size"], durable["records_per_second"]) == (2, 512, 2000)
    # Every record due in the 2 s was written and made durable (the last may just miss the end).
    assert 3900 <= durable["latency_ms"]["count"] <= 4000, doc
    assert 0 < durable["latency_ms"]["p50"] <= durable["latency_ms"]["max"]
    # A request every millisecond to both files, durable when both fsyncs covering it ended.
    requests = durable["request_latency_ms"]
    assert 1900 <= requests["count"] <= 2000, doc
    assert 0 < requests["p50"] <= requests["max"]
    assert list(tmp_path.iterdir()) == [], "the limits' test files must be removed"


def test_cluster_info_table_and_json(cli, srv):
    """`cluster info` reports the cluster id, controller and brokers that Metadata gives,
    and the number of topics."""
    b = srv.bootstrap
    create_topic(b, "c1", 1)
    create_topic(b, "c2", 2)
    md = topic_metadata(b)
    (broker_md,) = md.brokers.values()

    doc = cli.json("cluster", "info")
    assert {"cluster_id", "controller", "brokers", "topics"} <= set(doc), doc
    assert doc["cluster_id"] == md.cluster_id
    controller = doc["controller"]["id"] if isinstance(doc["controller"], dict) else doc["controller"]
    assert controller == md.controller_id
    assert doc["brokers"] == [
        {
            "id": broker_md.id,
            "host": broker_md.host,
            "port": broker_md.port,
            "role": "controller (active)",
            "metadata_lag": 0,
        }
    ]
    assert (broker_md.host, broker_md.port) == (srv.host, srv.port)
    assert doc["topics"] == 2
    # The quorum of one, as DescribeQuorum reports it.
    quorum = doc["quorum"]
    assert quorum["leader"] == broker_md.id and [v["id"] for v in quorum["voters"]] == [broker_md.id]
    assert quorum["high_watermark"] > 0 and quorum["voters"][0]["log_end_offset"] == quorum["high_watermark"]

    out = cli.run("cluster", "info").out
    assert md.cluster_id in out, out
    if f"{srv.host}:{srv.port}" not in out:
        line = line_with(out, srv.host, str(srv.port))  # host and port in separate columns is fine
        assert str(broker_md.id) in cells(line), line
    assert re.search(rf"(?im)^.*controller\W+{md.controller_id}\b", out), out
    assert re.search(r"(?im)^.*topics\W+2\b", out), out


def test_cluster_config_get_and_set(cli, srv):
    """`cluster config get [KEY]` lists broker configs (name, value, source);
    `cluster config set KEY=VALUE` changes a dynamic broker config (seen by DescribeConfigs);
    bad or read-only values are exit 1."""
    b = srv.bootstrap
    out = cli.run("cluster", "config", "get").out
    line = line_with(out, "num.partitions")
    assert "1" in cells(line), line
    line_with(out, "log.retention.ms")
    assert json_config_value(cli.json("cluster", "config", "get", "num.partitions"), "num.partitions") == "1"

    cli.run("cluster", "config", "set", "log.retention.ms=1234")
    assert broker_configs(b)["log.retention.ms"].value == "1234"
    line = line_with(cli.run("cluster", "config", "get", "log.retention.ms").out, "log.retention.ms")
    assert "1234" in cells(line) and re.search(r"(?i)dynamic", line), f"value 1234 from a dynamic source: {line}"
    assert json_config_value(cli.json("cluster", "config", "get", "log.retention.ms"), "log.retention.ms") == "1234"

    r = cli.run("cluster", "config", "set", "log.retention.ms=soon", expect=1)
    assert_error(r, "log.retention.ms", "soon")
    r = cli.run("cluster", "config", "set", "num.partitions=3", expect=1)
    assert_error(r, "num.partitions")
    assert broker_configs(b)["log.retention.ms"].value == "1234"
    assert broker_configs(b)["num.partitions"].value == "1"


# --------------------------------------------------------------------------------------
# completions, help, global options
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions(strom_bin, tmp_path, shell):
    """`completions SHELL` prints a non-empty script for strom; bash and (if installed)
    zsh/fish accept its syntax."""
    r = run_strom(strom_bin, ["completions", shell])
    assert r.rc == 0, r
    assert r.out.strip() and "strom" in r.out, r
    script = tmp_path / f"strom.{shell}"
    script.write_text(r.out)
    checker = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}[shell]
    if shutil.which(checker[0]):
        chk = subprocess.run(checker + [str(script)], capture_output=True, text=True, timeout=60)
        assert chk.returncode == 0, f"{shell} rejects the script: {chk.stderr}"


HELP_COMMANDS = [
    ["topic"], ["topic", "create"], ["topic", "list"], ["topic", "describe"], ["topic", "delete"],
    ["topic", "alter-config"], ["topic", "add-partitions"],
    ["produce"], ["consume"],
    ["group"], ["group", "list"], ["group", "describe"], ["group", "delete"], ["group", "reset-offsets"],
    ["cluster"], ["cluster", "info"], ["cluster", "config"], ["cluster", "config", "get"], ["cluster", "config", "set"],
    ["completions"], ["bench"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=[" ".join(c) for c in HELP_COMMANDS])
def test_help_has_examples(strom_bin, command):
    """Every command's --help exits 0 and has an Examples section that uses the command."""
    r = run_strom(strom_bin, [*command, "--help"])
    assert r.rc == 0, r
    assert "Examples" in r.out, f"no 'Examples' section\n{r!r}"
    examples = r.out.split("Examples", 1)[1]
    assert "strom " + " ".join(command) in examples, f"the examples should show `strom {' '.join(command)}`\n{r!r}"


def test_global_options_before_or_after_the_subcommand_and_env(strom_bin, srv):
    """--bootstrap and -o/--output work before or after the subcommand, and STROM_BOOTSTRAP
    replaces --bootstrap; all give the same answer."""
    b = srv.bootstrap
    create_topic(b, "glob", 2)
    want = [{"name": "glob", "partitions": 2, "replication_factor": 1, "internal": False}]
    variants = [
        (["--bootstrap", b, "-o", "json", "topic", "list"], None),
        (["topic", "list", "--bootstrap", b, "--output", "json"], None),
        (["-o", "json", "topic", "--bootstrap", b, "list"], None),
        (["topic", "list", "-o", "json"], {"STROM_BOOTSTRAP": b}),
    ]
    for args, env in variants:
        r = run_strom(strom_bin, args, env=clean_env(env))
        assert r.rc == 0, r
        assert r.json() == want, r
    # an explicit --bootstrap wins over the environment
    r = run_strom(strom_bin, ["--bootstrap", b, "-o", "json", "topic", "list"], env=clean_env({"STROM_BOOTSTRAP": UNREACHABLE}))
    assert r.rc == 0 and r.json() == want, r


def test_client_properties_from_config_file_and_dash_x(cli, srv, tmp_path):
    """--command-config FILE (key=value lines, comments allowed) and -X key=value reach librdkafka:
    the client.id they set is what the group coordinator sees for a `consume --group
    --follow` member; -X wins over the file."""
    b = srv.bootstrap
    create_topic(b, "props", 1)
    props = tmp_path / "client.properties"
    props.write_text("# client settings\nclient.id=from-config-file\n\nsocket.timeout.ms=30000\n")
    admin = ck_admin(b)

    def member_client_ids(group):
        d = admin.describe_consumer_groups([group])[group].result(timeout=30)
        return [m.client_id for m in d.members]

    for group, extra, want in [
        ("props-file", ["--command-config", str(props)], "from-config-file"),
        ("props-x", ["--command-config", str(props), "-X", "client.id=from-dash-x"], "from-dash-x"),
    ]:
        proc = spawn(cli, *extra, "consume", "props", "--group", group, "--follow")
        try:
            wait_until(lambda g=group: member_client_ids(g) == [want], 60, f"{group} member with client id {want}")
        finally:
            stop(proc)

    # the global --command-config FILE (Kafka tools' name) and `topic create -c/--config k=v`
    # do not get in each other's way
    cli.run("--command-config", str(props), "topic", "create", "both-configs", "--config", "retention.ms=1000")
    assert topic_configs(b, "both-configs")["retention.ms"].value == "1000"

    r = cli.run("-X", "no.such.property=1", "topic", "list", expect=None)
    assert r.rc in (1, 2), f"an unknown client property is an error (usage or operation)\n{r!r}"
    assert_error(r, "no.such.property")


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["topic", "describe", "ghost"],
        ["topic", "delete", "ghost"],
        ["topic", "alter-config", "ghost", "--set", "retention.ms=1000"],
        ["consume", "ghost"],
        ["consume", "ghost", "--format", "json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_unknown_topic_is_exit_1_with_a_helpful_message(cli, srv, args):
    """Operations on a topic that does not exist fail with exit 1, an `error:` line on
    stderr naming the topic, and no topic created as a side effect."""
    r = cli.run(*args, expect=1)
    assert_error(r, "ghost")
    assert "ghost" not in topic_names(srv.bootstrap)
    r = cli.run("-o", "json", *args, expect=1)
    assert_error(r, "ghost")


UNREACHABLE_CASES = [
        (["topic", "list"], None),
        (["topic", "list", "-o", "json"], None),
        (["topic", "create", "t"], None),
        (["topic", "describe", "t"], None),
        (["cluster", "info"], None),
        (["group", "list"], None),
        (["consume", "t"], None),
        (["produce", "t"], "x\n"),
]


@pytest.mark.parametrize("args,stdin", UNREACHABLE_CASES, ids=[" ".join(a) for a, _ in UNREACHABLE_CASES])
def test_unreachable_cluster_is_exit_3(strom_bin, args, stdin):
    """Nobody listens on 127.0.0.1:1: every command gives up (with the short timeout given
    by -X socket.timeout.ms) with exit 3 and an `error:` message naming the address."""
    r = run_strom(strom_bin, ["--bootstrap", UNREACHABLE, "-X", "socket.timeout.ms=2000", *args], input=stdin)
    assert r.rc == 3, f"expected exit code 3 (cannot reach the cluster)\n{r!r}"
    assert_error(r)
    assert UNREACHABLE in r.err or "bootstrap" in r.err.lower(), f"the message should say which address failed\n{r!r}"


def test_unreachable_cluster_with_the_timeout_option_or_options_after_the_subcommand(strom_bin):
    """--timeout bounds the wait for the cluster just as well, and the global options work
    after the subcommand too; still exit 3."""
    for args in (
        ["--bootstrap", UNREACHABLE, "--timeout", "3s", "topic", "list"],
        ["topic", "list", "--bootstrap", UNREACHABLE, "-X", "socket.timeout.ms=2000"],
    ):
        r = run_strom(strom_bin, args)
        assert r.rc == 3, r
        assert_error(r)


def test_unreachable_cluster_with_default_bootstrap_from_env(strom_bin):
    """STROM_BOOTSTRAP is used when --bootstrap is absent (so this is unreachable too)."""
    r = run_strom(strom_bin, ["-X", "socket.timeout.ms=2000", "cluster", "info"], env=clean_env({"STROM_BOOTSTRAP": UNREACHABLE}))
    assert r.rc == 3, r
    assert_error(r)


BAD_ARGS = [
    ["no-such-command"],
    ["topic"],
    ["topic", "create"],
    ["topic", "create", "bad-args", "--partitions", "many"],
    ["topic", "create", "bad-args", "-c", "retention.ms"],
    ["topic", "alter-config", "bad-args", "--set", "novalue"],
    ["topic", "add-partitions", "bad-args"],
    ["produce", "bad-args", "--acks", "2"],
    ["produce", "bad-args", "--compression", "brotli"],
    ["produce", "bad-args", "--format", "xml"],
    ["consume", "bad-args", "--from", "yesterday"],
    ["consume", "bad-args", "--format", "xml"],
    ["consume", "bad-args", "--count", "-3"],
    ["consume", "bad-args", "--isolation", "dirty"],
    ["group", "reset-offsets", "g", "--topic", "bad-args", "--to", "sometime"],
    ["cluster", "config", "set", "novalue"],
    ["-o", "yaml", "topic", "list"],
    ["-X", "novalue", "topic", "list"],
    ["completions", "tcsh"],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=[" ".join(a) for a in BAD_ARGS])
def test_bad_arguments_are_exit_2(cli, srv, args):
    """Usage errors are exit 2 with a message on stderr and nothing on stdout, and touch
    nothing on the broker."""
    r = cli.run(*args, input="x\n", expect=2)
    assert r.out.strip() == "", r
    if args in (["topic"],):
        # a command group without its subcommand: clap's usage text is a fine answer
        assert "error" in r.err.lower() or "Usage:" in r.err, r
    else:
        assert "error" in r.err.lower(), r
    assert "bad-args" not in topic_names(srv.bootstrap)


def test_invalid_topic_config_on_create_is_exit_1(cli, srv):
    """A config value the broker refuses is exit 1 with the broker's message, and no topic."""
    r = cli.run("topic", "create", "badcfg", "-c", "retention.ms=soon", expect=1)
    assert_error(r, "retention.ms", "soon")
    r = cli.run("topic", "create", "badcfg", "-c", "cleanup.policy=shred", expect=1)
    assert_error(r, "cleanup.policy")
    assert "badcfg" not in topic_names(srv.bootstrap)


# --------------------------------------------------------------------------------------
# README quickstart
# --------------------------------------------------------------------------------------


def quickstart_block() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- quickstart -->\s*```(?:sh|bash|shell)?\n(.*?)```\s*<!-- /quickstart -->", text, re.S)
    assert m, "README.md has no ```sh block between <!-- quickstart --> and <!-- /quickstart -->"
    return m.group(1)


def test_readme_quickstart_runs_as_written(strom_bin):
    """The README's quickstart block, run with bash -e in an empty directory with strom on
    PATH, exits 0 and shows the records it produced. It uses the default ports 9092 (Kafka)
    and 8081 (the schema registry)."""
    script = quickstart_block()
    for port in (9092, 8081):
        if port_in_use("127.0.0.1", port):
            pytest.skip(f"127.0.0.1:{port} is already in use; the quickstart needs the default ports")
    env = clean_env({"PATH": f"{Path(strom_bin).resolve().parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    with tempfile.TemporaryDirectory(prefix="strom-quickstart-") as cwd:
        proc = subprocess.Popen(
            ["bash", "-c", "set -e\n" + script],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"the quickstart did not finish within 180s:\n{out.decode(errors='replace')}") from None
        finally:
            # the script's own `kill %1` stops the broker; if the script failed before it,
            # stop what it started (its process group, which we created).
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        text = ANSI_RE.sub("", out.decode(errors="replace"))
        log = Path(cwd, "strom.log")
        log_text = log.read_text(errors="replace") if log.exists() else "(no strom.log)"
        assert proc.returncode == 0, f"quickstart exited {proc.returncode}\n--- output ---\n{text}\n--- strom.log ---\n{log_text}"
        assert "hello" in text and "hi there" in text, f"consumed records missing from the output:\n{text}"
        records = {}
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if isinstance(d, dict) and "value" in d:
                    records[d.get("key")] = d["value"]
        assert records == {"alice": "hello", "bob": "hi there"}, f"consume --format json lines:\n{text}"
        wait_until(lambda: not port_in_use("127.0.0.1", 9092), 30, "the quickstart broker to stop after `kill %1`")
