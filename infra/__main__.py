"""Pulumi entry point: `pulumi up --stack <env>` runs this."""

from infra.program import main

main()
