"""ModelStore: where the GGUF files live.

On AWS, an S3 bucket that is private (all public access blocked, ACLs disabled), encrypted by
default (SSE-KMS with a key this component creates and rotates, or SSE-S3), versioned, reachable
over TLS only, with a lifecycle that expires non-current versions and aborts stale multipart
uploads, plus a read-only IAM policy for node roles / IRSA. On-prem, an existing S3-compatible
endpoint: the bucket is made there if it is absent (`StoreBucket`, kept on destroy), nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from components.store_bucket import StoreBucket
from components.store_policies import read_only_policy, tls_only_policy

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")

Encryption = Literal["sse-kms", "sse-s3"]
_SseByDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
)


@dataclass(frozen=True)
class ModelStoreArgs:
    bucket: str
    prefix: str = "models"
    region: str = "us-east-1"
    encryption: Encryption = "sse-kms"
    noncurrent_version_days: int = 30
    abort_multipart_days: int = 7
    # On-prem: an existing S3-compatible endpoint (MinIO, Ceph RGW); no AWS resource is created.
    existing_endpoint_url: str | None = None
    # Lets `pulumi destroy` remove a bucket that still holds models (off: models are shared).
    force_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict[str, str])

    def __post_init__(self) -> None:
        if not _BUCKET_RE.match(self.bucket) or ".." in self.bucket:
            raise ValueError(f"ModelStore: {self.bucket!r} is not a valid S3 bucket name")
        if self.prefix != self.prefix.strip("/") or "//" in self.prefix:
            raise ValueError(
                f"ModelStore: prefix {self.prefix!r} must not start or end with '/' or hold '//'"
            )
        if not _REGION_RE.match(self.region):
            raise ValueError(f"ModelStore: {self.region!r} is not an AWS region name")
        if self.encryption not in ("sse-kms", "sse-s3"):
            raise ValueError(
                f"ModelStore: encryption must be sse-kms or sse-s3, not {self.encryption!r}"
            )
        if self.noncurrent_version_days < 1 or self.abort_multipart_days < 1:
            raise ValueError("ModelStore: lifecycle days must be at least 1")
        if self.existing_endpoint_url is not None:
            check_endpoint_url(self.existing_endpoint_url)

    @property
    def on_prem(self) -> bool:
        return self.existing_endpoint_url is not None


def check_endpoint_url(url: str) -> None:
    """An http(s) URL with a host and no credentials in it (they would end up in state)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint URL {url!r} must be http(s)://HOST[:PORT]")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "endpoint URL must not carry credentials: they come from the AWS credential chain"
        )


class ModelStore(pulumi.ComponentResource):
    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    endpoint_url: pulumi.Output[str | None]
    read_policy_arn: pulumi.Output[str | None]
    kms_key_arn: pulumi.Output[str | None]
    store_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:models:ModelStore", name, None, opts)
        self._name = name
        self._args = args
        self.prefix = pulumi.Output.from_input(args.prefix)
        if args.existing_endpoint_url is not None:
            bucket = StoreBucket(
                f"{name}-bucket",
                args.bucket,
                args.existing_endpoint_url,
                args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.bucket = bucket.bucket
            self.endpoint_url = pulumi.Output.from_input(args.existing_endpoint_url)
            self.read_policy_arn = pulumi.Output.from_input(None)
            self.kms_key_arn = pulumi.Output.from_input(None)
        else:
            self._declare_bucket()
        self.store_url = pulumi.Output.concat(
            "s3://", self.bucket, "/" if args.prefix else "", args.prefix
        )
        self.register_outputs(
            {
                "bucket": self.bucket,
                "prefix": self.prefix,
                "endpointUrl": self.endpoint_url,
                "readPolicyArn": self.read_policy_arn,
                "kmsKeyArn": self.kms_key_arn,
                "storeUrl": self.store_url,
            }
        )

    def _declare_bucket(self) -> None:
        name, args = self._name, self._args
        child = pulumi.ResourceOptions(parent=self)
        tags = {"llamafleet:component": "model-store", **args.tags}
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=args.bucket,
            region=args.region,
            force_destroy=args.force_destroy,
            tags=tags,
            opts=child,
        )
        key = self._kms_key(tags) if args.encryption == "sse-kms" else None
        access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            region=args.region,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            region=args.region,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            region=args.region,
            rules=[_encryption_rule(key)],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            region=args.region,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            region=args.region,
            rules=_lifecycle_rules(args),
            # S3 rejects non-current-version rules on a bucket whose versioning is not yet set.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            region=args.region,
            policy=bucket.arn.apply(tls_only_policy),
            # Both write the bucket's policy status; applying them together is a known race.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access_block]),
        )
        key_arn = None if key is None else key.arn
        read_policy = aws.iam.Policy(
            f"{name}-read",
            description=f"Read-only access to the models under s3://{args.bucket}/{args.prefix}",
            policy=pulumi.Output.all(bucket.arn, key_arn).apply(
                lambda arns: read_only_policy(arns[0], args.prefix, arns[1], args.region)
            ),
            tags=tags,
            opts=child,
        )
        self.bucket = bucket.bucket
        self.endpoint_url = pulumi.Output.from_input(None)
        self.read_policy_arn = read_policy.arn.apply(lambda arn: arn)
        self.kms_key_arn = pulumi.Output.from_input(key_arn)

    def _kms_key(self, tags: Mapping[str, str]) -> aws.kms.Key:
        args = self._args
        key = aws.kms.Key(
            f"{self._name}-key",
            description=f"Default encryption of the model store s3://{args.bucket}",
            region=args.region,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=dict(tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key


def _encryption_rule(
    key: aws.kms.Key | None,
) -> aws.s3.BucketServerSideEncryptionConfigurationRuleArgs:
    if key is None:
        return aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
            apply_server_side_encryption_by_default=_SseByDefault(sse_algorithm="AES256")
        )
    # A bucket key: one KMS call per bucket and period instead of one per object part read.
    return aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
        apply_server_side_encryption_by_default=_SseByDefault(
            sse_algorithm="aws:kms", kms_master_key_id=key.arn
        ),
        bucket_key_enabled=True,
    )


def _lifecycle_rules(args: ModelStoreArgs) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    whole_bucket = aws.s3.BucketLifecycleConfigurationRuleFilterArgs()
    return [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-noncurrent-versions",
            status="Enabled",
            filter=whole_bucket,
            noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                noncurrent_days=args.noncurrent_version_days
            ),
        ),
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-multipart-uploads",
            status="Enabled",
            filter=whole_bucket,
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=args.abort_multipart_days
            ),
        ),
    ]
