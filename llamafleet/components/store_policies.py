"""IAM policy documents for the model store, as plain data (no Pulumi import).

The bucket policy only ever denies (plain-HTTP access); every grant goes through the read-only
identity policy that node roles or IRSA roles attach.
"""

from __future__ import annotations

import json
from typing import Any

POLICY_VERSION = "2012-10-17"


def prefix_objects(prefix: str) -> str:
    """The object-key pattern under `prefix` (the whole bucket when the prefix is empty)."""
    return f"{prefix}/*" if prefix else "*"


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request to the bucket and its objects that does not arrive over TLS."""
    return _document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )


def read_only_policy(bucket_arn: str, prefix: str, kms_key_arn: str | None, region: str) -> str:
    """GetObject under the prefix, a ListBucket limited to the prefix, and, for SSE-KMS,
    kms:Decrypt on the store's key when S3 asks for it (not directly)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadModels",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/{prefix_objects(prefix)}",
        },
        {
            # Lets the fetcher tell a missing object (404) from a forbidden one (403).
            "Sid": "ListModels",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [prefix_objects(prefix)]}},
        },
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                "Sid": "DecryptModels",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            }
        )
    return _document(*statements)


def _document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": POLICY_VERSION, "Statement": list(statements)}, sort_keys=True)
