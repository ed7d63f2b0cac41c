"""ModelStore: where the GGUF files live.

On AWS, an S3 bucket that is private (all public access blocked, ACLs disabled), encrypted by
default (SSE-KMS with a key this component creates and rotates, or SSE-S3), versioned, reachable
over TLS only, with a lifecycle that expires non-current versions and aborts stale multipart
uploads, plus a read-only IAM policy for node roles / IRSA. On-prem, an existing S3-compatible
endpoint: the bucket is made there if it is absent (`StoreBucket`, kept on destroy), nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field

from llamafleet.components.config import (
    AwsRegion,
    AwsTagKey,
    AwsTagValue,
    BucketName,
    ComponentConfig,
    EndpointUrl,
    StorePrefix,
    endpoint_port,
)
from llamafleet.components.store_bucket import StoreBucket
from llamafleet.components.store_policies import read_only_policy, tls_only_policy
from llamafleet.modelsync.store import StoreLocation

_SseByDefault = (
    aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
)
# AWS tag limits: keys up to 128 characters, values up to 256
# (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html).


class ModelStoreConfig(ComponentConfig):
    """Where the GGUF files live: an S3 bucket the component creates (AWS), or a bucket on an
    existing S3-compatible endpoint (`endpoint_url`: MinIO, Ceph RGW). Raises pydantic's
    ValidationError for a value the store cannot use."""

    bucket: BucketName = Field(description="S3 bucket holding the GGUF files (AWS naming rules).")
    prefix: StorePrefix = Field(
        default="models", description="Key prefix inside the bucket; empty: the bucket's root."
    )
    region: AwsRegion = Field(default="us-east-1", description="Bucket region code.")
    endpoint_url: EndpointUrl | None = Field(
        default=None,
        description="S3-compatible endpoint http(s)://HOST[:PORT] (on-prem); the bucket is made "
        "there if absent and kept on destroy. Default: AWS S3, with a bucket the stack owns.",
    )
    checksum_headers: bool = Field(
        default=True,
        description="Send x-amz-checksum-* headers (a CRC32 per part, the SHA-256 of single "
        "uploads) for the store to verify; off for stores that refuse them (Backblaze B2), in "
        "every client: `up`'s sync, the pods' fetch. Either way each object is proven by its "
        "SHA-256 content address.",
    )
    encryption: Literal["sse-kms", "sse-s3"] = Field(
        default="sse-kms",
        description="AWS: bucket default encryption, a KMS key the stack creates and rotates "
        "(sse-kms) or S3-managed keys (sse-s3).",
    )
    noncurrent_version_days: int = Field(
        default=30, ge=1, description="AWS: days an overwritten or deleted object version is kept."
    )
    abort_multipart_days: int = Field(
        default=7, ge=1, description="AWS: days before an unfinished multipart upload is removed."
    )
    force_destroy: bool = Field(
        default=False,
        description="AWS: let `destroy` delete a bucket that still holds models (off: other "
        "stacks share them).",
    )
    tags: dict[AwsTagKey, AwsTagValue] = Field(
        default_factory=dict[str, str], description="AWS: tags on the bucket, key and policy."
    )
    protect: bool = Field(
        default=True,
        description="AWS: Pulumi `protect` on the bucket and its KMS key, so `destroy` (or a "
        "rename that would replace them) stops instead of deleting the models other stacks "
        "share and the key their objects are encrypted with. On-prem the bucket is kept on "
        "destroy anyway.",
    )

    @property
    def on_prem(self) -> bool:
        """Whether the store is an existing S3-compatible endpoint rather than AWS S3."""
        return self.endpoint_url is not None

    @property
    def port(self) -> int:
        """TCP port pods reach the store on (the endpoint URL's, or 443 for AWS S3)."""
        return endpoint_port(self.endpoint_url)

    @property
    def location(self) -> StoreLocation:
        """The store's bucket and prefix (its `url` is s3://BUCKET[/PREFIX])."""
        return StoreLocation(self.bucket, self.prefix)


class ModelStore(pulumi.ComponentResource):
    """The store of the module docstring, from a `ModelStoreConfig`.

    Outputs: `bucket`, `prefix`, `endpoint_url` (None on AWS), `read_policy_arn` (the read-only
    IAM policy; None on-prem), `kms_key_arn` (None with sse-s3 and on-prem) and `store_url`
    (s3://BUCKET[/PREFIX]).
    """

    bucket: pulumi.Output[str]
    prefix: pulumi.Output[str]
    endpoint_url: pulumi.Output[str | None]
    read_policy_arn: pulumi.Output[str | None]
    kms_key_arn: pulumi.Output[str | None]
    store_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelStoreConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("llamafleet:models:ModelStore", name, None, opts)
        self._name = name
        self._args = args
        self.prefix = pulumi.Output.from_input(args.prefix)
        if args.endpoint_url is not None:
            bucket = StoreBucket(
                f"{name}-bucket",
                args.bucket,
                args.endpoint_url,
                args.region,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.bucket = bucket.bucket
            self.endpoint_url = pulumi.Output.from_input(args.endpoint_url)
            self.read_policy_arn = pulumi.Output.from_input(None)
            self.kms_key_arn = pulumi.Output.from_input(None)
        else:
            self._declare_bucket()
        self.store_url = self.bucket.apply(lambda bucket: StoreLocation(bucket, args.prefix).url)
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
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
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
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
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


def _lifecycle_rules(args: ModelStoreConfig) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
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
