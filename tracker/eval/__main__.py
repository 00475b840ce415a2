"""``python -m tracker.eval``: see ``tracker.eval.cli``."""

import sys

from tracker.eval.cli import main

sys.exit(main())
