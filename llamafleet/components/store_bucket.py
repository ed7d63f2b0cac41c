"""StoreBucket: the models bucket on an S3-compatible endpoint (MinIO, Ceph RGW, the local stack's
moto), through a dynamic provider over boto3: the AWS provider plugin is for AWS, and an on-prem
network should not need it.

- create: makes the bucket, or adopts it when it already exists (an operator may have made it).
- read (`pulumi refresh`, and `llamafleet up`, which refreshes first): a bucket that is gone (an
  in-memory store restarted, a bucket deleted by hand) leaves the state, so the next `up` makes it
  again instead of trusting a state that names what is not there.
- delete: keeps the bucket and its objects. Models are content-addressed and shared by stacks;
  emptying a store is an operator's decision, not a side effect of `pulumi destroy`.

Credentials come from the standard AWS chain of the process running `pulumi up`, never from
inputs, so none reach the state.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic
from botocore.exceptions import BotoCoreError, ClientError
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider

from llamafleet.modelsync.store import describe_error, make_s3_client

Props = dict[str, Any]
# A bucket elsewhere is another bucket.
REPLACE_KEYS = ("bucket", "endpointUrl")
# S3's CreateBucket takes no LocationConstraint for us-east-1 (AWS S3 API reference).
DEFAULT_REGION = "us-east-1"


def _client(props: Props) -> Any:
    return make_s3_client(str(props["endpointUrl"]))


def bucket_exists(client: Any, bucket: str) -> bool:
    """HeadBucket: True if it exists and these credentials reach it; False if it does not exist.

    Raises:
        RuntimeError: anything else (refused, unreachable), with a one-line message.
    """
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchBucket", "NotFound"}:
            return False
        raise RuntimeError(f"checking bucket {bucket}: {describe_error(err)}") from None
    except BotoCoreError as err:
        raise RuntimeError(f"checking bucket {bucket}: {describe_error(err)}") from None
    return True


class StoreBucketProvider(ResourceProvider):
    """Holds no attributes: Pulumi pickles the provider object into the state."""

    serialize_as_secret_always = False

    def create(self, props: Props) -> CreateResult:
        """Make the bucket in `region` (us-east-1 takes no LocationConstraint), or adopt one that
        exists (output `adopted` True). The id is the bucket name.

        Raises:
            RuntimeError: the bucket cannot be checked or made (one line from botocore).
        """
        bucket = str(props["bucket"])
        client = _client(props)
        adopted = bucket_exists(client, bucket)
        if not adopted:
            region = str(props.get("region") or DEFAULT_REGION)
            where = (
                {}
                if region == DEFAULT_REGION
                else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            )
            try:
                client.create_bucket(Bucket=bucket, **where)
            except (ClientError, BotoCoreError) as err:
                raise RuntimeError(f"creating bucket {bucket}: {describe_error(err)}") from None
        return CreateResult(bucket, {**props, "adopted": adopted})

    def diff(self, _id: str, olds: Props, news: Props) -> DiffResult:
        """Replace when the bucket or the endpoint changes; any other difference is no change."""
        replaces = [key for key in REPLACE_KEYS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def read(self, id_: str, props: Props) -> ReadResult:
        """Refresh: a bucket that is gone leaves the state; one that exists keeps its
        properties."""
        if not bucket_exists(_client(props), id_):
            return ReadResult("", {})  # gone: the engine drops it from the state
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: Props) -> None:
        """Delete nothing: the bucket and its models are kept (the module docstring says why)."""
        pulumi.log.info("StoreBucket: the bucket and its models are kept (shared by stacks)")


class StoreBucket(pulumi.dynamic.Resource, module="models", name="StoreBucket"):
    """Bucket `bucket` on the S3-compatible `endpoint_url`, made if absent, never emptied."""

    bucket: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        bucket: str,
        endpoint_url: str,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"bucket": bucket, "endpointUrl": endpoint_url, "region": region, "adopted": None}
        super().__init__(StoreBucketProvider(), resource_name, props, opts)
