import sys

from modelsync.cli import main

sys.exit(main())
