"""Read pickled PyTorch checkpoints that name foreign classes, without importing or running anything they name.

Released OSTrack checkpoints pickle objects of the official training code (settings, meters, EasyDict). The
weights-only loader refuses them, and a plain ``torch.load`` would import and run whatever the pickle names. Here
every global a file names resolves to one of:

- a tensor-rebuilding function or type that PyTorch's own weights-only loader allows (the same objects);
- an inert placeholder class for any other class, which only records the state the pickle gives it;
- a refusal (``UnsafeCheckpoint``) for functions and standard-library objects that could act (``os.system``,
  ``builtins.eval``, ``subprocess.Popen`` ...), raised before anything is called.

No module is imported on the file's behalf.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import _weights_only_unpickler

# Standard-library names that only rebuild plain data: safe to resolve to the real object.
_SAFE_STDLIB = {
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.Counter",
    "collections.deque",
    "copyreg._reconstructor",
    "argparse.Namespace",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "fractions.Fraction",
    "pathlib.Path",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    "_codecs.encode",
    "builtins.set",
    "builtins.frozenset",
    "builtins.slice",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.bytes",
    "builtins.range",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.str",
    "builtins.object",
}
# Lower-case names outside the standard library that pickles of plain data call (numpy scalars and arrays).
_INERT_CALLS = {
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.dtype",
}
_STDLIB_ROOTS = set(sys.stdlib_module_names) | {"builtins", "__builtin__", "posix", "nt", "__main__"}


class UnsafeCheckpoint(Exception):
    """The file asks to import or call something that could run code."""


class Placeholder(dict):
    """Stands in for a class a pickle names; keeps the constructor arguments, items, list items and state."""

    qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args
        self.items_list: list[Any] = []
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        self.state = state

    def append(self, item: Any) -> None:
        self.items_list.append(item)

    def extend(self, items: Any) -> None:
        self.items_list.extend(items)

    def __reduce__(self):  # a placeholder is never pickled back
        raise TypeError(f"placeholder for {self.qualified_name} cannot be pickled")

    def __repr__(self) -> str:
        return f"<placeholder {self.qualified_name}>"


def _refusing_callable(qualified: str):
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise UnsafeCheckpoint(f"it asks to call {qualified} while loading")

    return refuse


def _allowed_torch_globals() -> dict[str, Any]:
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update(_weights_only_unpickler._get_user_allowed_globals())
    return allowed


class _Unpickler(pickle.Unpickler):
    _placeholders: ClassVar[dict[str, type]] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's) records Python 2 names ('commands.Popen' for subprocess.Popen); judge the
        # object the standard unpickler would resolve them to.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f"{module}.{name}"
        allowed = _allowed_torch_globals()
        if qualified in allowed:
            return allowed[qualified]
        if qualified in _SAFE_STDLIB:
            root, _, attr = qualified.rpartition(".")
            return getattr(sys.modules.get(root) or __import__(root), attr)
        if module.split(".")[0] in _STDLIB_ROOTS:
            raise UnsafeCheckpoint(f"it names {qualified}, which can run code")
        if name[:1].islower() and qualified not in _INERT_CALLS:
            return _refusing_callable(qualified)
        return self._placeholder(qualified)

    @classmethod
    def _placeholder(cls, qualified: str) -> type:
        if qualified not in cls._placeholders:
            cls._placeholders[qualified] = type(
                qualified.rpartition(".")[2] or "Placeholder", (Placeholder,), {"qualified_name": qualified}
            )
        return cls._placeholders[qualified]


def _load(file: Any, **kwargs: Any) -> Any:
    # torch's legacy (non-zip) reader calls ``pickle_module.load`` for its header records. These must go
    # through the restricted unpickler too, or a raw pickle file runs its payload while torch reads the magic
    # number.
    return _Unpickler(file, **kwargs).load()


_pickle_module = types.ModuleType("tracker_safe_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = _load
_pickle_module.__dict__["UnpicklingError"] = pickle.UnpicklingError


def safe_load(path: str | Path) -> Any:
    """Load a torch checkpoint on CPU with foreign classes as placeholders; raise ``UnsafeCheckpoint`` on code."""
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_pickle_module)
