"""`python -m llamafleet.modelsync`: the modelsync command line, exiting with its status."""

import sys

from llamafleet.modelsync.cli import main

sys.exit(main())
