"""ModelStore under Pulumi's mock monitor: what it declares, with which inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from llamafleet.command.mock_run import MOCK_ACCOUNT as ACCOUNT
from llamafleet.command.mock_run import Declared, run_program
from llamafleet.components.model_store import ModelStore, ModelStoreConfig

BUCKET = "llamafleet-models"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
COMPONENT = "llamafleet:models:ModelStore"


def mock_arn(service: str, name: str) -> str:
    return f"arn:aws:{service}:us-east-1:{ACCOUNT}:{name}"


def outputs_of(args: ModelStoreConfig) -> dict[str, Any]:
    """The component's outputs, resolved inside the mocked program run."""
    seen: dict[str, Any] = {}

    def program() -> None:
        store = ModelStore("store", args)
        for attribute in ("bucket", "prefix", "endpoint_url", "read_policy_arn", "kms_key_arn"):
            getattr(store, attribute).apply(lambda value, key=attribute: seen.update({key: value}))
        store.store_url.apply(lambda value: seen.update(store_url=value))

    run_program(program, "test", {}, preview=False)
    return seen


def declare(**kwargs: Any) -> dict[str, Declared]:
    args = ModelStoreConfig(**({"bucket": BUCKET} | kwargs))
    declared = run_program(lambda: ModelStore("store", args), "test", {}, preview=False)
    return {d.type.rsplit(":", 1)[-1]: d for d in declared}


def policy(resource: Declared) -> dict[str, Any]:
    document = json.loads(resource.redacted_inputs["policy"])
    assert document["Version"] == "2012-10-17"
    return document


def statements_by_sid(resource: Declared) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy(resource)["Statement"]}


def test_public_access_is_fully_blocked_and_acls_disabled() -> None:
    declared = declare()
    block = declared["BucketPublicAccessBlock"].inputs
    for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"):
        assert block[setting] is True, setting
    assert block["restrictPublicBuckets"] is True
    ownership = declared["BucketOwnershipControls"].inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert declared["Bucket"].inputs["bucket"] == BUCKET
    assert declared["Bucket"].inputs["forceDestroy"] is False


def test_default_encryption_uses_the_key_it_creates_with_rotation() -> None:
    declared = declare()
    key = declared["Key"]
    assert key.inputs["enableKeyRotation"] is True
    (rule,) = declared["BucketServerSideEncryptionConfiguration"].inputs["rules"]
    by_default = rule["applyServerSideEncryptionByDefault"]
    assert by_default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": mock_arn("kms", key.name)}
    assert rule["bucketKeyEnabled"] is True


def test_sse_s3_variant_creates_no_key_and_grants_no_kms() -> None:
    declared = declare(encryption="sse-s3")
    assert "Key" not in declared
    (rule,) = declared["BucketServerSideEncryptionConfiguration"].inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    actions = {s["Action"] for s in policy(declared["Policy"])["Statement"]}
    assert actions == {"s3:GetObject", "s3:ListBucket"}


def test_versioning_enabled_and_lifecycle_expires_noncurrent_and_aborts_uploads() -> None:
    declared = declare(noncurrent_version_days=14, abort_multipart_days=3)
    versioning = declared["BucketVersioning"].inputs["versioningConfiguration"]
    assert versioning == {"status": "Enabled"}
    rules = {r["id"]: r for r in declared["BucketLifecycleConfiguration"].inputs["rules"]}
    assert all(rule["status"] == "Enabled" for rule in rules.values())
    noncurrent = rules["expire-noncurrent-versions"]
    assert noncurrent["noncurrentVersionExpiration"] == {"noncurrentDays": 14}
    assert "expiration" not in noncurrent  # current versions (the served models) never expire
    aborts = rules["abort-incomplete-multipart-uploads"]
    assert aborts["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 3}


def test_bucket_policy_denies_every_request_without_tls() -> None:
    (statement,) = policy(declare()["BucketPolicy"])["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert sorted(statement["Resource"]) == [BUCKET_ARN, f"{BUCKET_ARN}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_read_policy_grants_only_reads_under_the_prefix() -> None:
    declared = declare(prefix="fleet/models")
    statements = statements_by_sid(declared["Policy"])
    assert all(s["Effect"] == "Allow" for s in statements.values())
    read, listing, decrypt = (
        statements[sid] for sid in ("ReadModels", "ListModels", "DecryptModels")
    )
    assert read["Action"] == "s3:GetObject"
    assert read["Resource"] == f"{BUCKET_ARN}/fleet/models/*"
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == BUCKET_ARN
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["fleet/models/*"]}}
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == mock_arn("kms", declared["Key"].name)
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    }


def test_read_policy_is_least_privilege() -> None:
    text = declare()["Policy"].redacted_inputs["policy"]
    for statement in json.loads(text)["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            assert "*" not in action, action
            assert not action.startswith(("s3:Put", "s3:Delete", "kms:Encrypt", "kms:Generate")), (
                action
            )
        assert statement.get("NotAction") is None and statement.get("NotResource") is None
    assert "arn:aws:s3:::*" not in text


def test_children_are_named_and_parented_after_the_component() -> None:
    declared = declare()
    component = declared["ModelStore"]
    assert component.type == COMPONENT
    children = [d for d in declared.values() if d is not component]
    assert len(children) == 9
    for child in children:
        assert child.name.startswith("store-"), child.name
        assert child.parent == component.urn, child.name
        assert child.type.startswith("aws:"), child.type


def test_outputs_name_the_bucket_key_and_read_policy() -> None:
    assert outputs_of(ModelStoreConfig(bucket=BUCKET, prefix="fleet")) == {
        "bucket": BUCKET,
        "prefix": "fleet",
        "endpoint_url": None,
        "read_policy_arn": mock_arn("iam", "store-read"),
        "kms_key_arn": mock_arn("kms", "store-key"),
        "store_url": f"s3://{BUCKET}/fleet",
    }


def test_on_prem_outputs_pass_the_endpoint_through() -> None:
    args = ModelStoreConfig(bucket=BUCKET, endpoint_url="https://s3.lab:9000")
    assert outputs_of(args) == {
        "bucket": BUCKET,
        "prefix": "models",
        "endpoint_url": "https://s3.lab:9000",
        "read_policy_arn": None,
        "kms_key_arn": None,
        "store_url": f"s3://{BUCKET}/models",
    }


def test_on_prem_declares_no_aws_resource_only_the_bucket_there() -> None:
    declared = run_program(
        lambda: ModelStore(
            "store", ModelStoreConfig(bucket=BUCKET, endpoint_url="https://s3.lab:9000")
        ),
        "test",
        {},
        preview=False,
    )
    assert [d.type for d in declared] == [COMPONENT, "pulumi-python:dynamic/models:StoreBucket"]
    bucket = declared[1]
    assert bucket.name == "store-bucket" and bucket.parent == declared[0].urn
    assert (bucket.inputs["bucket"], bucket.inputs["endpointUrl"]) == (
        BUCKET,
        "https://s3.lab:9000",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bucket": "Models_Bucket"}, "is not an S3 bucket name"),
        ({"bucket": "models..fleet"}, "no two adjacent dots"),
        ({"bucket": "192.168.1.10"}, "must not look like an IP address"),
        ({"prefix": "/models/"}, "must not start or end with '/'"),
        ({"region": "mars-north"}, "is not an AWS region code"),
        ({"region": "EU-West-1"}, "is not an AWS region code"),
        ({"encryption": "rot13"}, "'sse-kms' or 'sse-s3'"),
        ({"noncurrent_version_days": 0}, "greater than or equal to 1"),
        ({"tags": {"": "x"}}, "at least 1 character"),
        ({"endpoint_url": "ftp://store"}, "http(s)://HOST"),
        ({"endpoint_url": "https://ak:sk@s3.lab"}, "must not carry credentials"),
        ({"endpoint_url": "https://s3.lab/bucket"}, "without a path"),
        ({"endpoint_url": "https://s3.lab:99999"}, "is not a URL"),
    ],
)
def test_bad_arguments_are_rejected_with_one_clear_message(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelStoreConfig(**({"bucket": BUCKET} | kwargs))
    (error,) = caught.value.errors()
    assert message in error["msg"]


@pytest.mark.parametrize(
    ("endpoint_url", "port"),
    [(None, 443), ("https://s3.lab", 443), ("http://s3.lab", 80), ("http://127.0.0.1:9000", 9000)],
)
def test_the_store_port_is_derived_from_the_endpoint_url(
    endpoint_url: str | None, port: int
) -> None:
    assert ModelStoreConfig(bucket=BUCKET, endpoint_url=endpoint_url).port == port


def test_an_empty_prefix_is_the_bucket_root() -> None:
    assert ModelStoreConfig(bucket=BUCKET, prefix="").location.url == f"s3://{BUCKET}"
