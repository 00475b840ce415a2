"""Shared test setup: Qt draws offscreen so GUI tests run without a display (set before any Qt import)."""

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# ONNX exports (the CPU's default backend) go to a fresh folder, not the user's cache; subprocesses inherit it.
os.environ.setdefault("OSTRACK_LIVE_CACHE", tempfile.mkdtemp(prefix="ostrack-live-tests-"))

import pytest


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """Weights (safetensors, config embedded) of the micro model of the reliability tests, once per module."""
    from tests.test_reliability_common import write_micro_weights

    return write_micro_weights(tmp_path_factory.mktemp("micro"))
