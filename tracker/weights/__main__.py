"""``python -m tracker.weights ...``: see ``tracker.weights.cli``."""

import sys

from tracker.weights.cli import main

sys.exit(main())
