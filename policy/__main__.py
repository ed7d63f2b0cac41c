"""The llamafleet CrossGuard pack: `pulumi preview --policy-pack policy`."""

import sys
from pathlib import Path

# The engine runs this file from policy/; the rules live in the repository's `policy` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policy.crossguard import policies

PolicyPack(name="llamafleet", policies=list(policies()))
