"""``python -m tracker.train_grounding --config grounding_small --out runs/grounding_small ...``: see ``trainer``."""

import sys

from tracker.train_grounding.trainer import main

sys.exit(main())
