"""Bad input gets a Kafka error code or a closed connection: never a crash, a hang or a
corrupted log.

Requests are hand-built frames on raw TCP sockets (request header v1: int16 api_key,
int16 api_version, int32 correlation_id, string client_id). All tests share one broker;
after each bad input a confluent-kafka producer/consumer pair (the canary) must still
work against it, and the broker process must still be alive.
"""

from __future__ import annotations

import random
import socket
import struct
import time
import uuid

import pytest

from conftest import BrokerFactory, ck_consumer, ck_producer, create_topic, wait_until, watermarks

CLIENT_ID = b"strom-e2e-raw"


# --------------------------------------------------------------------------------------
# Raw protocol helpers
# --------------------------------------------------------------------------------------


def kstr(s: bytes | None) -> bytes:
    return struct.pack(">h", -1) if s is None else struct.pack(">h", len(s)) + s


def kbytes(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        v = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(">" + fmt)
        return v if len(v) > 1 else v[0]

    def string(self):
        n = self.take("h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s.decode()


class Raw:
    """One TCP connection speaking hand-built Kafka frames."""

    def __init__(self, host: str, port: int, timeout: float = 15):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.corr = 0

    def close(self):
        self.sock.close()

    def header(self, api_key: int, version: int) -> tuple[int, bytes]:
        self.corr += 1
        return self.corr, struct.pack(">hhi", api_key, version, self.corr) + kstr(CLIENT_ID)

    def send_frame(self, payload: bytes):
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        """Send a request, return the response body (after the v0 response header)."""
        corr, hdr = self.header(api_key, version)
        self.send_frame(hdr + body)
        (size,) = struct.unpack(">i", self.recv_exact(4))
        resp = self.recv_exact(size)
        (got,) = struct.unpack_from(">i", resp)
        assert got == corr, f"response correlation id {got}, sent {corr}"
        return resp[4:]

    def expect_closed(self, what: str, timeout: float = 15):
        """The broker must close the connection (EOF or reset) within the deadline."""
        self.sock.settimeout(timeout)
        got = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    return got
                got += data
        except (ConnectionResetError, BrokenPipeError):
            return got
        except socket.timeout:
            pass
        raise AssertionError(f"{what}: the broker kept the connection open for {timeout}s (received {len(got)} bytes)")


def api_versions(raw: Raw) -> dict[int, tuple[int, int]]:
    r = Reader(raw.request(18, 0, b""))
    err = r.take("h")
    assert err == 0, f"ApiVersions v0 error {err}"
    return {k: (lo, hi) for k, lo, hi in (r.take("hhh") for _ in range(r.take("i")))}


def produce_v3(raw: Raw, topic: str, partition: int, records: bytes) -> tuple[int, int]:
    """Produce v3, acks=-1: returns (error_code, base_offset) for the one partition."""
    body = kstr(None) + struct.pack(">hi", -1, 30000) + struct.pack(">i", 1) + kstr(topic.encode())
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + kbytes(records)
    r = Reader(raw.request(0, 3, body))
    assert r.take("i") == 1
    assert r.string() == topic
    assert r.take("i") == 1
    idx, err, base_offset, _log_append_time = r.take("ihqq")
    assert idx == partition
    return err, base_offset


def create_topics_v2(raw: Raw, name: bytes, partitions: int = 1, rf: int = 1) -> tuple[int, str | None]:
    body = struct.pack(">i", 1) + kstr(name) + struct.pack(">ih", partitions, rf) + struct.pack(">ii", 0, 0)
    body += struct.pack(">ib", 30000, 0)
    r = Reader(raw.request(19, 2, body))
    r.take("i")  # throttle
    assert r.take("i") == 1
    got_name = r.string()
    assert got_name == name.decode(errors="replace"), got_name
    return r.take("h"), r.string()


def v2_batch(n: int = 3, base_ts: int | None = None) -> bytearray:
    from kafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    ts = base_ts or int(time.time() * 1000)
    for i in range(n):
        assert b.append(i, timestamp=ts + i, key=b"raw-%d" % i, value=b"raw value %d" % i, headers=[]) is not None
    return b.build()


def v1_message_set(n: int = 3) -> bytearray:
    from kafka.record.legacy_records import LegacyRecordBatchBuilder

    b = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    ts = int(time.time() * 1000)
    for i in range(n):
        assert b.append(i, timestamp=ts, key=b"old-%d" % i, value=b"magic one %d" % i) is not None
    return b.build()


# --------------------------------------------------------------------------------------
# Shared broker + canary
# --------------------------------------------------------------------------------------


class Canary:
    """A confluent-kafka producer/consumer pair that must keep working through everything."""

    TOPIC = "canary"

    def __init__(self, broker):
        self.broker = broker
        create_topic(broker.bootstrap, self.TOPIC, 1)
        self.producer = ck_producer(broker.bootstrap, **{"linger.ms": 0})
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.consumer = ck_consumer(broker.bootstrap)
        self.consumer.assign([TopicPartition(self.TOPIC, 0, OFFSET_BEGINNING)])
        self.count = 0

    def check(self, after: str):
        assert self.broker.alive(), f"broker died after {after}\n{self.broker.output()}"
        token = uuid.uuid4().hex.encode()
        errors = []
        self.producer.produce(self.TOPIC, value=token, on_delivery=lambda err, msg: errors.append(err))
        assert self.producer.flush(30) == 0, f"canary produce not delivered after {after}"
        assert errors == [None], f"canary produce failed after {after}: {errors}"

        def seen():
            m = self.consumer.poll(0.2)
            if m is None:
                return False
            assert m.error() is None, f"canary consumer error after {after}: {m.error()}"
            return m.value() == token

        wait_until(seen, 30, f"canary record to be consumed after {after}")
        self.count += 1

    def close(self):
        self.consumer.close()
        self.producer.flush(5)


@pytest.fixture(scope="module")
def env(strom_bin, tmp_path_factory):
    factory = BrokerFactory(strom_bin, tmp_path_factory.mktemp("bad-input"))
    broker = factory()
    create_topic(broker.bootstrap, "target", 1)
    canary = Canary(broker)
    canary.check("startup")
    yield broker, canary
    canary.close()
    assert broker.alive(), f"broker died during the bad-input tests\n{broker.output()}"
    factory.close()  # SIGTERM must still give a clean exit


def raw_conn(broker) -> Raw:
    return Raw(broker.host, broker.port)


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_raw_client_sanity(env):
    """Positive control for the hand-built frames: ApiVersions, a valid Produce v3 and a valid
    CreateTopics v2 succeed, so the failures below are about the bad parts only."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        versions = api_versions(raw)
        assert versions[0][0] <= 3 <= versions[0][1], f"Produce versions {versions.get(0)}"
        assert versions[19][0] <= 2 <= versions[19][1], f"CreateTopics versions {versions.get(19)}"
        hw = watermarks(broker.bootstrap, "target", [0])[0][1]
        assert produce_v3(raw, "target", 0, bytes(v2_batch(3))) == (0, hw)
        assert watermarks(broker.bootstrap, "target", [0])[0][1] == hw + 3
        assert create_topics_v2(raw, b"raw-created")[0] == 0
    finally:
        raw.close()
    canary.check("valid raw requests")


GARBAGE = {
    # (api_key, version): a body whose first fields cannot decode, followed by random bytes
    "metadata-v1-huge-array": (3, 1, struct.pack(">i", 0x7FFFFFFF)),
    "produce-v3-overlong-string": (0, 3, struct.pack(">h", 0x7FFF)),
    "fetch-v4-huge-array": (1, 4, random.Random(1).randbytes(17) + struct.pack(">i", 0x7FFFFFFF)),
    "createtopics-v2-huge-array": (19, 2, struct.pack(">i", 0x7FFFFFFF)),
    "listoffsets-v1-negative-array": (2, 1, struct.pack(">ii", -1, -7)),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_body_closes_connection(env, case):
    """A known API whose body is garbage: the broker closes the connection."""
    broker, canary = env
    api_key, version, prefix = GARBAGE[case]
    raw = raw_conn(broker)
    try:
        _, hdr = raw.header(api_key, version)
        raw.send_frame(hdr + prefix + random.Random(case).randbytes(100))
        raw.expect_closed(case)
    finally:
        raw.close()
    canary.check(case)


def test_frame_shorter_than_header_closes_connection(env):
    """A 3-byte frame cannot even hold api_key and api_version."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        raw.send_frame(b"\x00\x03\x00")
        raw.expect_closed("3-byte frame")
    finally:
        raw.close()
    canary.check("3-byte frame")


@pytest.mark.parametrize("size", [200 * 1024 * 1024, 0x7FFFFFFF, -1])
def test_oversized_or_negative_frame_length_closes_connection(env, size):
    """A length prefix beyond 100 MiB (or negative) is refused without reading or buffering
    the rest: the connection is closed while the client has sent only a few bytes."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        _, hdr = raw.header(3, 1)
        raw.sock.sendall(struct.pack(">i", size) + hdr + b"\x00" * 1000)
        raw.expect_closed(f"frame length {size}")
    finally:
        raw.close()
    canary.check(f"frame length {size}")


@pytest.mark.parametrize("api_key,version", [(9999, 0), (-5, 0), (3, 99)], ids=["key-9999", "key-negative", "metadata-v99"])
def test_unknown_api_or_version_closes_connection(env, api_key, version):
    """An API key the broker does not know (or a version of a known API outside its range,
    other than ApiVersions) closes the connection."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        _, hdr = raw.header(api_key, version)
        raw.send_frame(hdr + b"\x00" * 16)
        raw.expect_closed(f"api_key {api_key} v{version}")
    finally:
        raw.close()
    canary.check(f"api_key {api_key} v{version}")


def test_api_versions_unsupported_version_answers_v0(env):
    """ApiVersions v99 gets UNSUPPORTED_VERSION (35) in a v0 body listing the supported
    versions (so clients can retry), and the connection stays usable for a v0 retry."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        r = Reader(raw.request(18, 99, b""))
        err = r.take("h")
        assert err == 35, f"ApiVersions v99 error code {err}, expected 35 (UNSUPPORTED_VERSION)"
        n = r.take("i")
        assert 0 <= n < 1000, f"api_keys array length {n}"
        keys = {k: (lo, hi) for k, lo, hi in (r.take("hhh") for _ in range(n))}
        assert 18 in keys and keys[18][0] == 0, f"ApiVersions entry in the v0 error body: {keys.get(18)}"
        # the client retries on the same connection with a version it can now choose
        assert 3 in api_versions(raw)
    finally:
        raw.close()
    canary.check("ApiVersions v99")


def _flip(data: bytearray, pos: int) -> bytes:
    data = bytearray(data)
    data[pos] ^= 0xFF
    return bytes(data)


def _longer_length_field(data: bytearray) -> bytes:
    data = bytearray(data)
    (length,) = struct.unpack_from(">i", data, 8)
    struct.pack_into(">i", data, 8, length + 50)
    return bytes(data)


BAD_BATCHES = {
    # name: (builder, accepted error codes)
    "crc-byte-flipped": (lambda: _flip(v2_batch(), 17), {2}),
    "payload-byte-flipped": (lambda: _flip(v2_batch(), len(v2_batch()) - 3), {2}),
    "magic-1-message-set": (lambda: bytes(v1_message_set()), {2, 87}),
    "truncated-batch": (lambda: bytes(v2_batch())[:-10], {2, 87}),
    "length-field-too-long": (lambda: _longer_length_field(v2_batch()), {2, 87}),
    "header-only": (lambda: bytes(v2_batch())[:40], {2, 87}),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_produce_corrupt_batch_is_rejected_and_not_stored(env, case):
    """Produce v3 with a damaged record batch: the partition answers CORRUPT_MESSAGE (2)
    (INVALID_RECORD (87) also accepted where Kafka uses it), nothing reaches the log, and
    the same connection then appends a valid batch at the unchanged high watermark."""
    broker, canary = env
    build, accepted = BAD_BATCHES[case]
    raw = raw_conn(broker)
    try:
        hw = watermarks(broker.bootstrap, "target", [0])[0][1]
        err, _ = produce_v3(raw, "target", 0, build())
        assert err in accepted, f"{case}: partition error code {err}, expected one of {sorted(accepted)}"
        assert watermarks(broker.bootstrap, "target", [0])[0][1] == hw, f"{case}: the rejected batch moved the high watermark"
        assert produce_v3(raw, "target", 0, bytes(v2_batch(2))) == (0, hw), f"{case}: valid batch after the bad one"
    finally:
        raw.close()
    canary.check(case)


def test_produce_to_unknown_partition_or_topic(env):
    """Produce to a partition the topic does not have, or to a topic that does not exist,
    answers UNKNOWN_TOPIC_OR_PARTITION (3) and creates nothing (Produce never auto-creates)."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        assert produce_v3(raw, "target", 99, bytes(v2_batch()))[0] == 3
        assert produce_v3(raw, "no-such-topic", 0, bytes(v2_batch()))[0] == 3
    finally:
        raw.close()
    assert not (broker.data_dir / "target-99").exists()
    assert not list(broker.data_dir.glob("no-such-topic-*"))
    from conftest import topic_metadata

    assert "no-such-topic" not in topic_metadata(broker.bootstrap).topics
    canary.check("produce to unknown partition/topic")


def test_create_topics_invalid_name_raw(env):
    """CreateTopics v2 with invalid names answers INVALID_TOPIC_EXCEPTION (17) per topic."""
    broker, canary = env
    raw = raw_conn(broker)
    try:
        for name in (b"bad/name", b"..", b"x" * 250, b"with space", b"\xc3\xa9t\xc3\xa9"):
            err, msg = create_topics_v2(raw, name)
            assert err == 17, f"CreateTopics {name!r}: error {err} ({msg}), expected 17"
    finally:
        raw.close()
    canary.check("CreateTopics with invalid names")


def test_target_log_is_intact(env):
    """After all the bad batches, the target partition holds only the valid records, readable
    by a consumer, with contiguous offsets."""
    broker, canary = env
    from conftest import ck_consume

    hw = watermarks(broker.bootstrap, "target", [0])[0][1]
    recs = ck_consume(broker.bootstrap, "target", [0], hw)
    assert [r.offset for r in recs] == list(range(hw))
    assert all(r.value.startswith(b"raw value ") for r in recs), "a record not from a valid raw batch was stored"
    canary.check("reading the target partition")
