"""`python -m autotune.report`: see autotune/report/cli.py."""

import sys

from autotune.report.cli import main

sys.exit(main())
