"""`python -m llamafleet.delivery`: the workflows' scripts (llamafleet/delivery/cli.py)."""

from llamafleet.delivery.cli import main

raise SystemExit(main())
