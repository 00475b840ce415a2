"""Shared test setup: Qt draws offscreen so GUI tests run without a display (set before any Qt import)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
