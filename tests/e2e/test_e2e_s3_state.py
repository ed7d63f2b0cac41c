"""A shared stack's state in S3 and its secrets under AWS KMS, through the real engine: the
backend `s3://…` and the secrets provider `awskms://…` both served by moto on loopback (moto's S3
and KMS). The stack file names its secrets provider (`secretsprovider`), which `llamafleet up`
creates the stack with; the state object holds no secret in plain text; and the backend's lock
holds: a second `up` started while the first holds it is refused in one line, and the first
completes."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from e2e_support import LLAMAFLEET, TEAM_B, Project, ProjectFactory, small_config

pytestmark = pytest.mark.e2e

PREFIX = "pulumi"


def aws(service: str, endpoint: str) -> Any:
    """A boto3 client of moto's `service` (moto takes any credentials)."""
    return boto3.client(
        service,  # pyright: ignore[reportCallIssue, reportArgumentType]
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="e2e-state",
        aws_secret_access_key="e2e-state",
    )


@pytest.fixture(scope="module")
def state_bucket(store_endpoint: str) -> str:
    bucket = f"state-{uuid.uuid4().hex[:12]}"
    aws("s3", store_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="module")
def kms_alias(store_endpoint: str) -> str:
    kms = aws("kms", store_endpoint)
    key = kms.create_key(Description="llamafleet e2e state secrets")["KeyMetadata"]["KeyId"]
    alias = f"alias/llamafleet-e2e-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    return alias


@pytest.fixture(scope="module")
def project(
    make_project: ProjectFactory,
    e2e_models: Path,
    store_endpoint: str,
    state_bucket: str,
    kms_alias: str,
) -> Iterator[Project]:
    made = make_project("e2e-s3", small_config(e2e_models, store_endpoint))
    made.env["PULUMI_BACKEND_URL"] = (
        f"s3://{state_bucket}/{PREFIX}?endpoint={store_endpoint}&region=us-east-1"
        "&use_path_style=true"
    )
    del made.env["PULUMI_CONFIG_PASSPHRASE"]  # KMS, not a passphrase
    # moto sends no response checksums; the AWS SDK would warn on every response.
    made.env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = "when_required"
    document = yaml.safe_load(made.stack_file.read_text())
    provider = f"awskms://{kms_alias}?region=us-east-1&endpoint={store_endpoint}"
    made.stack_file.write_text(
        yaml.safe_dump({"secretsprovider": provider, **document}, sort_keys=False)
    )
    yield made
    made.llamafleet("destroy", check=False)


def objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = aws("s3", endpoint)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_the_state_is_in_s3_and_its_secrets_under_kms(
    project: Project, store_endpoint: str, state_bucket: str, kms_alias: str
) -> None:
    project.llamafleet("up")

    checkpoints = objects(store_endpoint, state_bucket, f"{PREFIX}/.pulumi/stacks/")
    (key,) = [k for k in checkpoints if k.endswith(f"/{project.stack}.json")]
    state = json.loads(checkpoints[key])
    provider = state["checkpoint"]["latest"]["secrets_providers"]
    assert provider["type"] == "cloud"
    assert provider["state"]["url"].startswith(f"awskms://{kms_alias}?")
    assert "encryptedkey" in yaml.safe_load(project.stack_file.read_text())
    keys = project.llamafleet("keys", after=[TEAM_B], record=False).stdout.split()
    secrets = keys[1::2]
    assert secrets and all(len(s) >= 32 for s in secrets)
    assert not any(s.encode() in checkpoints[key] for s in secrets)
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    argv = [str(LLAMAFLEET), *args, project.stack, "--work-dir", str(project.work_dir)]
    return subprocess.Popen(
        argv, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_second_up_is_refused_while_the_first_holds_the_lock(
    project: Project, store_endpoint: str, state_bucket: str
) -> None:
    project.llamafleet("destroy")  # from nothing, so the first update holds the lock a while
    locks = f"{PREFIX}/.pulumi/locks/"
    first = start(project, "up")
    deadline = time.monotonic() + 300
    while not objects(store_endpoint, state_bucket, locks):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first up never took the lock"
        time.sleep(0.2)

    second = project.llamafleet("up", check=False)
    first_out, first_err = first.communicate(timeout=600)

    assert second.returncode == 2, second.stdout + second.stderr
    (line,) = second.stderr.splitlines()
    assert line.startswith(f"llamafleet up {project.stack}: {project.stack} is being updated by ")
    # The lock names the first run's engine (the pulumi CLI it started), alive on this host.
    assert re.search(r" \(pid \d+\); wait for that run to end, then run again$", line), line
    assert first.returncode == 0, first_out + first_err
    assert objects(store_endpoint, state_bucket, locks) == {}
    assert project.llamafleet("preview", "--expect-no-changes").returncode == 0
