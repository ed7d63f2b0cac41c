"""The README's move of a stack from the file backend to S3, then from a passphrase to AWS KMS
("State and secrets for shared stacks"), command for command with the built Pulumi CLI against
moto's S3 and KMS on loopback: a secret set before the move reads back after it, the last time
with no passphrase at all."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

pytestmark = pytest.mark.e2e

SECRET = "hunter2-but-longer"


def run(env: dict[str, str], cwd: Path, *argv: str) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def test_a_stack_moves_to_s3_then_to_kms_with_its_secrets(
    engine_bin: Path, store_endpoint: str, tmp_path: Path
) -> None:
    aws: dict[str, Any] = {
        "endpoint_url": store_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "migration",
        "aws_secret_access_key": "migration",
    }
    bucket = f"state-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", **aws).create_bucket(Bucket=bucket)
    kms = boto3.client("kms", **aws)
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    alias = f"alias/llamafleet-migration-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    (tmp_path / "Pulumi.yaml").write_text("name: moved\nruntime: python\n")
    env = {
        "PATH": f"{engine_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PULUMI_HOME": str(tmp_path / ".pulumi-home"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_CONFIG_PASSPHRASE": "the-old-passphrase",
        "AWS_ACCESS_KEY_ID": "migration",
        "AWS_SECRET_ACCESS_KEY": "migration",
        "AWS_REGION": "us-east-1",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    s3 = f"s3://{bucket}/prod?endpoint={store_endpoint}&region=us-east-1&use_path_style=true"
    kms_url = f"awskms://{alias}?region=us-east-1&endpoint={store_endpoint}"
    (tmp_path / "file-state").mkdir()
    pulumi = str(engine_bin / "pulumi")

    def cli(*args: str) -> str:
        return run(env, tmp_path, pulumi, *args)

    cli("login", (tmp_path / "file-state").as_uri())
    cli("stack", "init", "prod")
    cli("config", "set", "--secret", "token", SECRET)
    # The README's commands from here.
    cli("stack", "export", "--file", "prod.json")
    cli("login", s3)
    cli("stack", "init", "prod", "--secrets-provider", "passphrase")
    cli("stack", "import", "--file", "prod.json")
    assert cli("config", "get", "token").strip() == SECRET
    cli("stack", "change-secrets-provider", kms_url)

    del env["PULUMI_CONFIG_PASSPHRASE"]
    assert cli("config", "get", "token").strip() == SECRET  # through KMS alone
    stack_file = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())
    assert stack_file["secretsprovider"] == kms_url
    assert "encryptedkey" in stack_file and "encryptionsalt" not in stack_file
    listed = boto3.client("s3", **aws).list_objects_v2(Bucket=bucket, Prefix="prod/.pulumi/")
    assert any(o["Key"].endswith("/prod.json") for o in listed.get("Contents", []))
