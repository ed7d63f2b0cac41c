"""Pulumi entry point: `pulumi up --stack <env>` runs this."""

from llamafleet.program.stack import main

main()
