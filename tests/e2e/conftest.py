"""Shared fixtures and helpers for Strom's end-to-end tests.

Every test starts a real `strom serve` process on 127.0.0.1 with port 0, reads the
bound address from its banner, and drives it with real Kafka clients:
confluent-kafka (librdkafka), kafka-python (an independent implementation of the
protocol) and kcat.

Deadlines used below exist only so that a broken broker cannot hang the suite; they
are never assertions about speed.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "strom"

LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")
REGISTRY_RE = re.compile(r"schema registry on (http://\S+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# confluent-kafka timestamp types (msg.timestamp()[0])
TS_CREATE = 1
TS_LOG_APPEND = 2


# --------------------------------------------------------------------------------------
# Broker process
# --------------------------------------------------------------------------------------


def strom_bin_path() -> Path:
    return Path(os.environ.get("STROM_BIN") or DEFAULT_BIN)


class Broker:
    """One `strom serve` process bound to 127.0.0.1:0 over a data directory.

    The same data directory survives stop()/kill9()/start(), so restart tests can
    check what a fresh process recovers. The port changes on every start (port 0),
    so clients must be (re)created after each start from `bootstrap`.
    """

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, settings: Optional[dict] = None):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.settings = dict(settings or {})
        self.proc: Optional[subprocess.Popen] = None
        self.host: Optional[str] = None
        self.port: Optional[int] = None
        self.registry_url: Optional[str] = None
        self.starts = 0
        self._threads: list[threading.Thread] = []
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._listening = threading.Event()
        self.banner_stream: Optional[str] = None  # "out" per the contract
        # Set by keep_port(): restarts listen on the same port, so clients that
        # outlive a crash can reconnect.
        self.fixed_port: Optional[int] = None
        # Texts of BrokerFactory.NEVER_LOGGED this broker may log (a test driving it there).
        self.may_log: tuple = ()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle -------------------------------------------------------------------

    def command(self) -> list[str]:
        listener = f"127.0.0.1:{self.fixed_port or 0}"
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listeners", listener]
        # Each broker's schema registry on a free port, so that brokers run side by side.
        cmd += ["--schema-registry-listener", "127.0.0.1:0"]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    def start(self, timeout: float = 30.0) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        self.host = self.port = None
        self.registry_url = None
        self._listening.clear()
        with self._lines_lock:
            self._lines = []
        log_path = self.log_dir / f"strom-{self.starts}.log"
        logf = self._logf = open(log_path, "w", buffering=1)
        logf.write("$ " + " ".join(self.command()) + "\n")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, "out", logf), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, "err", logf), daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + timeout
        while not self._listening.is_set():
            if self.proc.poll() is not None:
                self._join_drains()
                raise AssertionError(
                    f"strom exited with code {self.proc.returncode} before printing 'listening on HOST:PORT'\n"
                    f"{self.output()}"
                )
            if time.monotonic() > deadline:
                out = self.output()
                self._terminate_hard()
                raise AssertionError(f"strom printed no 'listening on HOST:PORT' line within {timeout}s\n{out}")
            self._listening.wait(0.05)
        return self

    def _drain(self, stream, tag: str, logf):
        for raw in iter(stream.readline, ""):
            line = ANSI_RE.sub("", raw.rstrip("\n"))
            with self._lines_lock:
                self._lines.append(f"[{tag}] {line}")
            try:
                logf.write(f"[{tag}] {line}\n")
            except ValueError:
                pass
            registry = REGISTRY_RE.search(line)
            if registry:
                self.registry_url = registry.group(1)
            if not self._listening.is_set():
                # The contract puts the banner on stdout; accept it on stderr too so that
                # a logging detail does not hide every other result (noted in self.banner_stream).
                m = LISTENING_RE.search(line)
                if m:
                    host = m.group(1).strip("[]")
                    self.host, self.port = host, int(m.group(2))
                    self.banner_stream = tag
                    self._listening.set()
        stream.close()

    def _join_drains(self, timeout: float = 5.0):
        for t in self._threads:
            t.join(timeout)
        if self.proc is not None and self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
            self._logf.close()

    def _terminate_hard(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._join_drains()

    def registry(self, timeout: float = 10) -> str:
        """The schema registry's URL, from the banner."""
        wait_until(lambda: self.registry_url is not None, timeout, "the schema registry's banner line")
        return self.registry_url

    @property
    def bootstrap(self) -> str:
        assert self.alive(), "broker is not running"
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.port is not None

    def stop(self, timeout: float = 30.0, check: bool = True) -> int:
        """Clean shutdown with SIGTERM; by default asserts exit code 0."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._terminate_hard()
                raise AssertionError(f"strom did not exit within {timeout}s of SIGTERM\n{self.output()}")
        self._join_drains()
        rc = self.proc.returncode
        if check:
            assert rc == 0, f"strom exited with code {rc} after SIGTERM (expected 0)\n{self.output()}"
        return rc

    def kill9(self):
        """Crash: SIGKILL, no chance to flush or clean up."""
        assert self.proc is not None and self.proc.poll() is None, "broker not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._join_drains()

    def keep_port(self):
        """From now on, restarts listen on the port the broker has now."""
        self.fixed_port = self.port

    def restart(self):
        self.stop()
        return self.start()

    def crash_restart(self):
        self.kill9()
        return self.start()

    def output(self, last: int = 200) -> str:
        with self._lines_lock:
            lines = self._lines[-last:]
        return "---- strom output (last %d lines) ----\n%s\n----" % (last, "\n".join(lines))

    # -- offline tools ---------------------------------------------------------------

    def verify(self, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run `strom verify` on the data dir (the broker must be stopped)."""
        assert not (self.proc and self.proc.poll() is None), "strom verify must run while the broker is stopped"
        return subprocess.run(
            [str(self.binary), "verify", "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )

    def assert_verify_ok(self, when: str = "", after_crash: bool = False):
        """`strom verify` finds nothing wrong. After a crash (`after_crash`), a write cut
        off at the very end of a partition (exit code 2: never acknowledged, truncated at
        start) is what SIGKILL mid-write leaves and is allowed; damage is not."""
        res = self.verify()
        allowed = (0, 2) if after_crash else (0,)
        assert res.returncode in allowed, (
            f"strom verify failed {when} (exit {res.returncode})\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        )
        assert (res.stdout + res.stderr).strip(), f"strom verify printed no summary {when}"
        return res

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"


@pytest.fixture(scope="session")
def strom_bin() -> Path:
    path = strom_bin_path()
    if not path.exists():
        pytest.fail(
            f"strom binary not found at {path}: build it first (cargo build --release) or set STROM_BIN",
            pytrace=False,
        )
    return path


class BrokerFactory:
    def __init__(self, strom_bin: Path, base: Path):
        self.strom_bin = strom_bin
        self.base = base
        self.brokers: list[Broker] = []

    def __call__(self, settings: Optional[dict] = None, start: bool = True, name: Optional[str] = None) -> Broker:
        name = name or f"broker{len(self.brokers)}"
        b = Broker(self.strom_bin, self.base / name / "data", self.base / name / "logs", settings)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    # Log lines that mean a fetch copied records instead of sending them from the page cache
    # with sendfile: a response that could not be spliced (a codec change, say), or fetches
    # holding all the segment files their share of log.max.open.files allows. A test that
    # drives a broker there on purpose lists the text in that broker's `may_log`.
    NEVER_LOGGED = ("could not be spliced", "copied into memory")

    def close(self):
        """Stop every broker still running; a broker that does not exit 0 on SIGTERM, or that
        logged a line in NEVER_LOGGED, fails the test."""
        problems = []
        for b in self.brokers:
            if b.proc is not None and b.proc.poll() is None:
                try:
                    b.stop()
                except AssertionError as e:
                    problems.append(str(e))
            with b._lines_lock:
                never = [text for text in self.NEVER_LOGGED if text not in b.may_log]
                bad = [line for line in b._lines if any(text in line for text in never)]
            if bad:
                problems.append("the broker logged:\n" + "\n".join(bad[:5]))
        if problems:
            pytest.fail("at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def broker_factory(strom_bin, tmp_path):
    """Start brokers with extra `--set` settings: broker_factory({"num.partitions": 3})."""
    f = BrokerFactory(strom_bin, tmp_path)
    yield f
    f.close()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh single-node broker with default settings, in this test's tmp dir."""
    return broker_factory()


# --------------------------------------------------------------------------------------
# Deadlines
# --------------------------------------------------------------------------------------


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll pred() until truthy; returns its value. Fails with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    """A record as produced (offset/partition from the delivery report) or consumed."""

    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: tuple = ()
    timestamp: Optional[int] = None
    ts_type: Optional[int] = None  # TS_CREATE / TS_LOG_APPEND (confluent numbering)

    def content(self):
        return (self.key, self.value, self.headers, self.timestamp)


def norm_headers(h) -> tuple:
    if not h:
        return ()
    return tuple((k if isinstance(k, str) else k.decode(), None if v is None else bytes(v)) for k, v in h)


def by_partition(recs: Iterable[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = defaultdict(list)
    for r in recs:
        out[r.partition].append(r)
    return dict(out)


# --------------------------------------------------------------------------------------
# confluent-kafka helpers
# --------------------------------------------------------------------------------------


def ck_admin(bootstrap: str, **conf):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, **conf})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: Optional[dict] = None, timeout: float = 30):
    """Create a topic through AdminClient and wait until metadata shows all partitions."""
    from confluent_kafka.admin import NewTopic

    admin = ck_admin(bootstrap)
    fut = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})], operation_timeout=timeout)[name]
    fut.result(timeout)
    wait_for_topic(bootstrap, name, partitions, timeout)


def describe_topic_configs(bootstrap: str, topic: str) -> dict:
    """A topic's configs as DescribeConfigs gives them: name -> ConfigEntry."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = ck_admin(bootstrap)  # keep a reference: futures fail with _DESTROY if the client is collected
    return admin.describe_configs([res], request_timeout=30)[res].result(30)


def topic_metadata(bootstrap: str, topic: Optional[str] = None, timeout: float = 10):
    """Metadata of all topics (topic=None) without triggering auto-creation."""
    admin = ck_admin(bootstrap)
    return admin.list_topics(topic=topic, timeout=timeout) if topic else admin.list_topics(timeout=timeout)


def wait_for_topic(bootstrap: str, topic: str, partitions: Optional[int] = None, timeout: float = 30):
    def ready():
        md = topic_metadata(bootstrap)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return None
        if partitions is not None and len(t.partitions) != partitions:
            return None
        if any(p.error is not None or p.leader < 0 for p in t.partitions.values()):
            return None
        return t

    return wait_until(ready, timeout, f"topic {topic!r} with {partitions} partitions in metadata")


def ck_producer(bootstrap: str, **conf):
    from confluent_kafka import Producer

    base = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
    }
    base.update(conf)
    return Producer(base)


def ck_produce(
    bootstrap: str,
    topic: str,
    records: list[dict],
    timeout: float = 120,
    producer=None,
    **conf,
) -> list[Rec]:
    """Produce records (dicts with key/value/headers/timestamp/partition) with confluent-kafka.

    Returns one Rec per record, in input order, carrying the partition, offset and
    timestamp from the delivery report. Fails on any delivery error.
    """
    p = producer or ck_producer(bootstrap, **conf)
    results: list[Optional[Rec]] = [None] * len(records)
    errors = []

    def make_cb(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
                return
            ts_type, ts = msg.timestamp()
            results[i] = Rec(msg.partition(), msg.offset(), msg.key(), msg.value(), norm_headers(msg.headers()), ts, ts_type)

        return cb

    for i, r in enumerate(records):
        kwargs = {"value": r.get("value"), "key": r.get("key"), "on_delivery": make_cb(i)}
        if r.get("headers"):
            kwargs["headers"] = list(r["headers"])
        if r.get("timestamp") is not None:
            kwargs["timestamp"] = r["timestamp"]
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def ck_consumer(bootstrap: str, **conf):
    from confluent_kafka import Consumer

    base = {
        "bootstrap.servers": bootstrap,
        # Tests assign partitions themselves and never commit; the group id is unused.
        "group.id": "strom-e2e-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }
    base.update(conf)
    return Consumer(base)


def ck_consume(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    expected: int,
    timeout: float = 120,
    start_offset=None,
    consumer=None,
    **conf,
) -> list[Rec]:
    """Read `expected` records from the given partitions (from the beginning by default).

    Fails if the deadline passes before `expected` records arrived, or on an error event.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    c = consumer or ck_consumer(bootstrap, **conf)
    start = OFFSET_BEGINNING if start_offset is None else start_offset
    c.assign([TopicPartition(topic, p, start) for p in partitions])
    out: list[Rec] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"consumed {len(out)} of {expected} records from {topic} within {timeout}s")
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is not None:
                    raise AssertionError(f"consumer error event: {m.error()}")
                ts_type, ts = m.timestamp()
                out.append(Rec(m.partition(), m.offset(), m.key(), m.value(), norm_headers(m.headers()), ts, ts_type))
    finally:
        if consumer is None:
            c.close()
    return out


def watermarks(bootstrap: str, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    from confluent_kafka import TopicPartition

    c = ck_consumer(bootstrap)
    try:
        return {p: tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)) for p in partitions}
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# kafka-python helpers
# --------------------------------------------------------------------------------------

KP_CODEC = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}


def kp_produce(bootstrap: str, topic: str, records: list[dict], timeout: float = 300, **conf) -> list[Rec]:
    from kafka import KafkaProducer

    base = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=30000,
    )
    base.update(conf)
    p = KafkaProducer(**base)
    try:
        futs = []
        for r in records:
            futs.append(
                p.send(
                    topic,
                    value=r.get("value"),
                    key=r.get("key"),
                    headers=list(r.get("headers") or []),
                    partition=r.get("partition"),
                    timestamp_ms=r.get("timestamp"),
                )
            )
        p.flush(timeout)
        out = []
        for r, f in zip(records, futs):
            md = f.get(timeout=0)  # raises on a delivery error
            out.append(Rec(md.partition, md.offset, r.get("key"), r.get("value"), norm_headers(r.get("headers")), md.timestamp, None))
        return out
    finally:
        p.close(timeout=10)


def kp_consumer(bootstrap: str, **conf):
    from kafka import KafkaConsumer

    base = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # kafka-python drops the connection on any response frame above this (default 1 MB)
        receive_message_max_bytes=64 * 1024 * 1024,
    )
    base.update(conf)
    return KafkaConsumer(**base)


def kp_consume(bootstrap: str, topic: str, partitions: Iterable[int], expected: int, timeout: float = 300, **conf) -> list[Rec]:
    """kafka-python: assign + seek_to_beginning, read `expected` records (CRCs checked client side)."""
    from kafka import TopicPartition

    c = kp_consumer(bootstrap, **conf)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Rec] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python consumed {len(out)} of {expected} records from {topic} within {timeout}s")
            batches = c.poll(timeout_ms=500, max_records=50000)
            for _tp, msgs in batches.items():
                for m in msgs:
                    # kafka-python numbers timestamp types 0=CreateTime, 1=LogAppendTime
                    out.append(
                        Rec(m.partition, m.offset, m.key, m.value, norm_headers(m.headers), m.timestamp, m.timestamp_type + 1)
                    )
        return out
    finally:
        c.close()


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def assert_partition_logs_equal(produced: list[Rec], consumed: list[Rec], check_ts: bool = True):
    """Consumed == produced, per partition, in produce order, at offsets 0..n-1.

    `produced` must be in send order (one producer), carrying delivery-report offsets.
    """
    prod = by_partition(produced)
    cons = by_partition(consumed)
    assert sorted(cons) == sorted(prod), f"partitions consumed {sorted(cons)} != produced {sorted(prod)}"
    for p, precs in prod.items():
        crecs = cons[p]
        assert len(crecs) == len(precs), f"partition {p}: consumed {len(crecs)} records, produced {len(precs)}"
        offsets = [r.offset for r in crecs]
        assert offsets == list(range(len(precs))), f"partition {p}: offsets not contiguous 0..n-1: first bad at " + str(
            next(i for i, o in enumerate(offsets) if o != i)
        )
        dr_offsets = [r.offset for r in precs]
        assert dr_offsets == offsets, f"partition {p}: delivery-report offsets differ from consumed offsets"
        for i, (a, b) in enumerate(zip(precs, crecs)):
            if check_ts:
                ok = a.content() == b.content()
            else:
                ok = (a.key, a.value, a.headers) == (b.key, b.value, b.headers)
            assert ok, f"partition {p} offset {i}: produced {a} but consumed {b}"


# --------------------------------------------------------------------------------------
# On-disk segment parsing (Kafka v2 RecordBatch layout)
# --------------------------------------------------------------------------------------

BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # 61 bytes


@dataclass
class DiskBatch:
    position: int
    base_offset: int
    length: int  # batchLength field (bytes after the length field)
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    record_count: int
    raw: bytes = field(repr=False, default=b"")

    @property
    def codec(self) -> int:
        return self.attributes & 0x7

    @property
    def timestamp_type(self) -> int:  # 0 CreateTime, 1 LogAppendTime
        return (self.attributes >> 3) & 1

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


def crc32c(data: bytes) -> int:
    from crc32c import crc32c as _c

    return _c(data)


def read_segment(path: Path) -> list[DiskBatch]:
    """Parse every complete batch of a .log segment; raises on a torn/corrupt batch."""
    data = Path(path).read_bytes()
    pos = 0
    out = []
    while pos < len(data):
        if len(data) - pos < BATCH_HEADER.size:
            raise ValueError(f"{path}: {len(data) - pos} trailing bytes at {pos}, shorter than a batch header")
        fields = BATCH_HEADER.unpack_from(data, pos)
        base_offset, length, epoch, magic, crc, attrs, lod, bts, mts, pid, _pe, _bs, count = fields
        end = pos + 12 + length
        if length < BATCH_HEADER.size - 12 or end > len(data):
            raise ValueError(f"{path}: batch at {pos} declares length {length}, file has {len(data) - pos - 12}")
        raw = data[pos:end]
        if magic != 2:
            raise ValueError(f"{path}: batch at {pos} has magic {magic}")
        if crc32c(raw[21:]) != crc:
            raise ValueError(f"{path}: batch at {pos} fails its CRC-32C")
        out.append(DiskBatch(pos, base_offset, length, epoch, magic, crc, attrs, lod, bts, mts, pid, count, raw))
        pos = end
    return out


def segments(partition_dir: Path) -> list[Path]:
    return sorted(Path(partition_dir).glob("*.log"))
