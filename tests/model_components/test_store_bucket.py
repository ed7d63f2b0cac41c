"""StoreBucket's dynamic provider against moto_server: made if absent, adopted if present, dropped
from the state by a refresh once it is gone, never deleted."""

from __future__ import annotations

import uuid

import boto3
import pytest
from support.loopback import free_port

from llamafleet.components.store_bucket import StoreBucketProvider, bucket_exists
from llamafleet.modelsync.store import make_s3_client

pytestmark = pytest.mark.s3


def props(endpoint: str, bucket: str, region: str = "us-east-1") -> dict[str, object]:
    return {"bucket": bucket, "endpointUrl": endpoint, "region": region, "adopted": None}


def test_create_makes_the_bucket_and_a_second_create_adopts_it(moto_endpoint: str) -> None:
    name = f"store-{uuid.uuid4().hex[:12]}"
    provider = StoreBucketProvider()
    made = provider.create(props(moto_endpoint, name))
    assert made.id == name and (made.outs or {})["adopted"] is False
    assert bucket_exists(make_s3_client(moto_endpoint), name)
    again = provider.create(props(moto_endpoint, name))
    assert (again.outs or {})["adopted"] is True


def test_a_region_other_than_us_east_1_is_given_as_the_location(moto_endpoint: str) -> None:
    name = f"store-{uuid.uuid4().hex[:12]}"
    StoreBucketProvider().create(props(moto_endpoint, name, "eu-west-1"))
    location = boto3.client("s3", endpoint_url=moto_endpoint).get_bucket_location(Bucket=name)
    assert location["LocationConstraint"] == "eu-west-1"


def test_refresh_drops_a_bucket_that_is_gone_and_keeps_one_that_is_there(
    moto_endpoint: str, bucket: str
) -> None:
    provider = StoreBucketProvider()
    kept = provider.read(bucket, props(moto_endpoint, bucket))
    assert kept.id == bucket
    gone = provider.read("no-such-bucket-here", props(moto_endpoint, "no-such-bucket-here"))
    assert not gone.id  # an empty id: the engine removes the resource from the state


def test_delete_keeps_the_bucket_and_its_models(moto_endpoint: str, bucket: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.put_object(Bucket=bucket, Key="models/sha256/ab.gguf", Body=b"x")
    StoreBucketProvider().delete(bucket, props(moto_endpoint, bucket))
    assert s3.get_object(Bucket=bucket, Key="models/sha256/ab.gguf")["Body"].read() == b"x"


def test_an_unreachable_store_is_one_line_not_a_silent_create(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "llamafleet.modelsync.store.RETRY_ATTEMPTS", 1
    )  # fail fast; the path is the same
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RuntimeError, match=r"^checking bucket b-1: Could not connect") as raised:
        StoreBucketProvider().create(props(endpoint, "b-1"))
    assert len(str(raised.value).splitlines()) == 1


def test_moving_the_bucket_is_a_replacement() -> None:
    provider = StoreBucketProvider()
    old = props("http://127.0.0.1:1", "a")
    assert not provider.diff("a", old, dict(old)).changes
    moved = provider.diff("a", old, props("http://127.0.0.1:2", "a"))
    assert moved.replaces == ["endpointUrl"]
