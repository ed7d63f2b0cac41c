"""`python -m modelsync`: the modelsync command line, exiting with its status."""

import sys

from modelsync.cli import main

sys.exit(main())
