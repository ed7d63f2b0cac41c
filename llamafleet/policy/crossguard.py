"""The policy rules as CrossGuard policies, so `pulumi preview --policy-pack llamafleet/policy`
enforces on every Kubernetes resource what the tests check on rendered stacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from llamafleet.policy.rules import FLEET_RULES, OBJECT_RULES, K8sObject

KUBERNETES = "kubernetes:"


def _policy_name(rule: Callable[..., Any]) -> str:
    return "llamafleet-" + rule.__name__.replace("_", "-")


def _resource_policy(rule: Callable[[K8sObject], Iterator[str]]) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type.startswith(KUBERNETES):
            for problem in rule(dict(args.props)):
                report_violation(problem, None)

    return ResourceValidationPolicy(
        name=_policy_name(rule),
        description=(rule.__doc__ or rule.__name__).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_policy(rule: Callable[[list[K8sObject]], Iterator[str]]) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        objects = [dict(r.props) for r in args.resources if r.resource_type.startswith(KUBERNETES)]
        for problem in rule(objects):
            report_violation(problem, None)

    return StackValidationPolicy(
        name=_policy_name(rule),
        description=(rule.__doc__ or rule.__name__).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """Every rule as a mandatory CrossGuard policy named `llamafleet-<rule-name>`.

    Object rules become resource policies (Kubernetes resources only); fleet rules become
    stack policies. Each description is the rule's docstring (or its name).
    """
    return [
        *(_resource_policy(rule) for rule in OBJECT_RULES),
        *(_stack_policy(rule) for rule in FLEET_RULES),
    ]
