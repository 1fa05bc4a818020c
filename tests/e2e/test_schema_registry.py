"""The schema registry `strom serve` runs (Confluent's REST API, on --schema-registry-listener),
driven by confluent-kafka's SchemaRegistryClient and its Avro serializers, and by plain HTTP for
the error bodies: records produced through Strom and read back with the registry's schemas,
schema evolution, refusals with Confluent's codes, and the registry's state across kill -9 (it
lives in the `_schemas` topic).

What the registry does not do yet (JSON Schema, Protobuf, references, modes) is
refused with an error, and is the next step of issue 15."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import ck_consume, ck_producer, create_topic

V1 = json.dumps(
    {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}]}
)
# A new field with a default: old data reads with it, old readers skip it.
V2 = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "item", "type": "string"},
            {"name": "quantity", "type": "int", "default": 1},
        ],
    }
)
# `id` from long to string: no reader of either can read the other's data.
BREAKING = json.dumps(
    {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}, {"name": "item", "type": "string"}]}
)


def http(url: str, method: str = "GET", body=None) -> tuple[int, dict | list]:
    """One request with Confluent's content type: status and parsed JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_avro_records_round_trip_and_evolve_through_the_registry(broker):
    """AvroSerializer registers v1 and then v2 (a new field with a default) as it produces;
    each record carries magic byte 0 and its schema's id. AvroDeserializer reads both records
    with the writer's schema, with v1 as reader (the new field skipped) and with v2 as reader
    (the default filled in). A change of a field's type is refused with 409 under the default
    BACKWARD level, and taken once the subject's level is NONE."""
    registry = SchemaRegistryClient({"url": broker.registry()})
    topic = "orders"
    create_topic(broker.bootstrap, topic)
    context = SerializationContext(topic, MessageField.VALUE)
    producer = ck_producer(broker.bootstrap)
    producer.produce(topic, value=AvroSerializer(registry, V1)({"id": 1, "item": "tea"}, context))
    producer.produce(topic, value=AvroSerializer(registry, V2)({"id": 2, "item": "cake", "quantity": 3}, context))
    assert producer.flush(30) == 0
    values = [record.value for record in ck_consume(broker.bootstrap, topic, [0], 2)]
    assert [(value[0], int.from_bytes(value[1:5], "big")) for value in values] == [(0, 1), (0, 2)]

    fresh = SchemaRegistryClient({"url": broker.registry()})
    as_written = AvroDeserializer(fresh)
    assert [as_written(value, context) for value in values] == [
        {"id": 1, "item": "tea"},
        {"id": 2, "item": "cake", "quantity": 3},
    ]
    assert [AvroDeserializer(fresh, V1)(value, context) for value in values] == [
        {"id": 1, "item": "tea"},
        {"id": 2, "item": "cake"},
    ]
    assert [AvroDeserializer(fresh, V2)(value, context) for value in values] == [
        {"id": 1, "item": "tea", "quantity": 1},
        {"id": 2, "item": "cake", "quantity": 3},
    ]
    assert fresh.get_subjects() == ["orders-value"]
    assert fresh.get_versions("orders-value") == [1, 2]
    assert fresh.get_latest_version("orders-value").schema_id == 2

    with pytest.raises(SchemaRegistryError) as refused:
        fresh.register_schema("orders-value", Schema(BREAKING, "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert fresh.test_compatibility("orders-value", Schema(BREAKING, "AVRO")) is False
    fresh.set_compatibility("orders-value", "NONE")
    assert fresh.get_compatibility("orders-value") == "NONE"
    assert fresh.register_schema("orders-value", Schema(BREAKING, "AVRO")) == 3


def test_the_same_schema_gets_one_id_even_when_registrations_race(broker):
    """Eight clients register the same new schema under one subject at once, and the same
    schema under another subject: one id for all, one version per subject. A schema sent with
    other spacing is the same schema."""
    url = broker.registry()
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def register():
        client = SchemaRegistryClient({"url": url})
        barrier.wait()
        ids.append(client.register_schema("race-value", Schema(V1, "AVRO")))

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(ids) == 8 and len(set(ids)) == 1, ids
    client = SchemaRegistryClient({"url": url})
    spaced = json.dumps(json.loads(V1), indent=4)
    assert client.register_schema("other-value", Schema(spaced, "AVRO")) == ids[0]
    assert client.get_versions("race-value") == [1]
    status, versions = http(f"{url}/schemas/ids/{ids[0]}/versions")
    assert status == 200
    assert sorted((v["subject"], v["version"]) for v in versions) == [("other-value", 1), ("race-value", 1)]


def test_the_registry_survives_kill_9(broker):
    """Schemas, versions and compatibility levels are in `_schemas`, written durably before the
    answer: after kill -9 and a restart the registry serves them all, and the next new schema
    takes the next id."""
    url = broker.registry()
    client = SchemaRegistryClient({"url": url})
    first = client.register_schema("kept-value", Schema(V1, "AVRO"))
    second = client.register_schema("kept-value", Schema(V2, "AVRO"))
    client.set_compatibility(level="FULL")
    broker.kill9()
    broker.start()
    status, body = http(f"{broker.registry()}/schemas/ids/{second}")
    assert status == 200 and json.loads(body["schema"]) == json.loads(V2)
    status, body = http(f"{broker.registry()}/subjects/kept-value/versions")
    assert (status, body) == (200, [1, 2])
    status, body = http(f"{broker.registry()}/config")
    assert (status, body) == (200, {"compatibilityLevel": "FULL"})
    other = json.dumps({"type": "record", "name": "Other", "fields": []})
    status, body = http(f"{broker.registry()}/subjects/other-value/versions", "POST", {"schema": other})
    assert (status, body) == (200, {"id": max(first, second) + 1})


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("GET", "/subjects/missing/versions", None, 404, 40401),
        ("GET", "/subjects/known-value/versions/7", None, 404, 40402),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        ("POST", "/subjects/known-value", {"schema": '"string"'}, 404, 40403),
        ("GET", "/config/known-value", None, 404, 40408),
        ("POST", "/subjects/known-value/versions", {"schema": '{"type": "record"}'}, 422, 42201),
        ("POST", "/subjects/known-value/versions", {"schema": V1, "schemaType": "PROTOBUF"}, 422, 42201),
        ("GET", "/subjects/known-value/versions/0", None, 422, 42202),
        ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
        ("POST", "/subjects/known-value/versions", {"schema": BREAKING}, 409, 409),
        ("DELETE", "/subjects/known-value?permanent=true", None, 404, 40405),
        ("DELETE", "/subjects/known-value/versions/1?permanent=true", None, 404, 40407),
    ],
)
def test_refusals_carry_confluents_error_codes(broker, method, path, body, status, code):
    """Each refusal has the HTTP status and the `error_code` Confluent's clients look for, and
    a message."""
    url = broker.registry()
    assert http(f"{url}/subjects/known-value/versions", "POST", {"schema": V1})[0] == 200
    got_status, got = http(url + path, method, body)
    assert (got_status, got["error_code"]) == (status, code), got
    assert got["message"]


def test_subjects_and_versions_are_deleted_soft_first_and_permanently_after(broker):
    """Confluent's deletion rules through its client: a soft-deleted version is hidden unless
    asked for with deleted=true; deleting it again is 40406, deleting a soft-deleted subject
    again is 40404; permanent deletion takes what was soft-deleted; the schema id stays."""
    url = broker.registry()
    client = SchemaRegistryClient({"url": url})
    first = client.register_schema("gone-value", Schema(V1, "AVRO"))
    client.register_schema("gone-value", Schema(V2, "AVRO"))
    assert client.delete_version("gone-value", 2) == 2
    assert client.get_versions("gone-value") == [1]
    assert http(f"{url}/subjects/gone-value/versions?deleted=true") == (200, [1, 2])
    status, body = http(f"{url}/subjects/gone-value/versions/2", "DELETE")
    assert (status, body["error_code"]) == (404, 40406)
    assert client.delete_subject("gone-value") == [1]
    assert http(f"{url}/subjects") == (200, [])
    assert http(f"{url}/subjects?deleted=true") == (200, ["gone-value"])
    status, body = http(f"{url}/subjects/gone-value", "DELETE")
    assert (status, body["error_code"]) == (404, 40404)
    assert client.delete_subject("gone-value", permanent=True) == [1, 2]
    assert http(f"{url}/subjects?deleted=true") == (200, [])
    assert http(f"{url}/schemas/ids/{first}")[0] == 200
