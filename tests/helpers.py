"""Paths and small fakes shared by the tests."""

import errno
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
TINY_YAML = ROOT / "tests" / "data" / "tiny256ce.yaml"
TINY_WEIGHTS = CONFORMANCE / "tiny256ce.pth.tar"


class FullDisk:
    """A results file whose writes fail with ENOSPC once ``room`` lines were written."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= 1
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
