"""Paths shared by the tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
TINY_YAML = ROOT / "tests" / "data" / "tiny256ce.yaml"
TINY_WEIGHTS = CONFORMANCE / "tiny256ce.pth.tar"
