"""`python -m robustness …`: the CLI (robustness/cli.py)."""

import sys

from robustness.cli import main

sys.exit(main())
