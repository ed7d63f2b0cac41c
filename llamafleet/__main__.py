"""`python -m llamafleet`: the `llamafleet` command."""

import sys

from llamafleet.command.cli import main

sys.exit(main())
