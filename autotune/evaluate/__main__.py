"""`python -m autotune.evaluate`: see autotune/evaluate/cli.py."""

import sys

from autotune.evaluate.cli import main

sys.exit(main())
