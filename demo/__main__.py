"""``python -m demo`` (what ``make demo`` runs)."""

import sys

from demo.run import run_demo

sys.exit(run_demo())
