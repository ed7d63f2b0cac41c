"""The llamafleet CrossGuard pack: `pulumi preview --policy-pack llamafleet/policy`."""

import sys
from pathlib import Path

# The engine runs this file from llamafleet/policy/; the rules live in the repository's `llamafleet`
# package, two levels up.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import PolicyPack

from llamafleet.policy.crossguard import policies

PolicyPack(name="llamafleet", policies=list(policies()))
