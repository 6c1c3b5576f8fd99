"""Deprecated: `python -m masklite.robustness_cli` is the old name of `python -m robustness`, kept as an
alias for one release (README). The only import from masklite up into robustness (.importlinter allows it)."""

import sys

from robustness.cli import main

if __name__ == "__main__":
    sys.exit(main())
