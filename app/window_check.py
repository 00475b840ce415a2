"""Can Qt open a window here? Asked before the window is built, because Qt cannot be asked in-process.

When Qt cannot start its platform plugin (on Linux: system libraries missing, no display, a QT_QPA_PLATFORM that
names no plugin) it prints a hint to reinstall the application and aborts the whole process from inside
``QApplication()``; no exception ever reaches Python. So a child process starts Qt first. When that fails, one line
says why: the missing libraries (``ldd`` on the plugin) with the Debian/Ubuntu packages that provide them, or the
missing display, and the ``--no-gui`` alternative. This module imports no Qt itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

PROBE_TIMEOUT_S = 15.0  # a display that does not answer by then: stop asking and let Qt itself try
LDD_TIMEOUT_S = 10.0
PROBE = "from PyQt6.QtGui import QGuiApplication; QGuiApplication(['ostrack-live'])"
DEFAULT_PLUGIN = "xcb"  # what Qt starts on Linux when QT_QPA_PLATFORM is not set
NO_GUI_HINT = "or track without a window: --no-gui --init-box X,Y,W,H"
# Debian names a library's package after its soname (libfoo.so.1 -> libfoo1, libfoo-2.so.0 -> libfoo-2-0); these
# libraries that Qt's plugins need are packaged under other names.
PACKAGE_EXCEPTIONS = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libGLdispatch.so.0": "libglvnd0",
    "libbrotlicommon.so.1": "libbrotli1",
    "libbrotlidec.so.1": "libbrotli1",
    "libz.so.1": "zlib1g",
}

_PLUGIN_NAMED = re.compile(r'Qt platform plugin "([^"]+)"')
_NOT_OPENED = re.compile(r"([\w.+-]+\.so[.\d]*): cannot open shared object file")
_NOT_FOUND = re.compile(r"^\s*(\S+) => not found", re.MULTILINE)
_AVAILABLE = re.compile(r"Available platform plugins are: ([^\n]*?)\.?$", re.MULTILINE)


def window_problem(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One line saying why Qt cannot open a window here, or None when it can (or did not answer in ``timeout``)."""
    if not sys.platform.startswith("linux"):
        return None  # Qt's macOS and Windows plugins need nothing from the system that could be missing
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None  # slow is not broken: a loaded machine may take that long
    if probe.returncode == 0:
        return None
    return describe_failure(probe.stderr)


def describe_failure(qt_output: str) -> str:
    """The line for a Qt start-up that failed with ``qt_output`` on stderr."""
    plugins = list(dict.fromkeys(_PLUGIN_NAMED.findall(qt_output))) or [_requested_plugin()]
    missing = missing_libraries(qt_output, plugins)
    if missing:
        packages = " ".join(sorted({debian_package(lib) for lib in missing}))
        return (
            f"the window cannot open: Qt's {' and '.join(plugins)} platform "
            f"{'plugins need' if len(plugins) > 1 else 'plugin needs'} system libraries that are missing "
            f"({', '.join(missing)}); on Debian/Ubuntu: sudo apt-get install {packages}; {NO_GUI_HINT}"
        )
    if "Could not find the Qt platform plugin" in qt_output:
        available = _AVAILABLE.search(qt_output)
        choices = f"; this Qt has {available.group(1)}" if available else ""
        return (
            f'the window cannot open: Qt has no platform plugin "{plugins[0]}" '
            f"(QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM', '')}){choices}; {NO_GUI_HINT}"
        )
    if "could not connect to display" in qt_output:
        display = os.environ.get("DISPLAY")
        where = f"DISPLAY={display} does not answer" if display else "DISPLAY is not set"
        return f"the window cannot open: no X display to show it on ({where}); {NO_GUI_HINT}"
    return f"the window cannot open: Qt did not start ({_main_line(qt_output)}); {NO_GUI_HINT}"


def missing_libraries(qt_output: str, plugins: list[str]) -> list[str]:
    """Sonames Qt could not load: named in an import error, or missing from the plugins' ``ldd`` listings."""
    found = _NOT_OPENED.findall(qt_output)
    for plugin in plugins:
        plugin_file = _platforms_dir() / f"libq{plugin}.so"
        if plugin_file.is_file():
            found += _NOT_FOUND.findall(_ldd(plugin_file))
    return list(dict.fromkeys(found))


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` (e.g. libxcb-icccm.so.4 -> libxcb-icccm4)."""
    if soname in PACKAGE_EXCEPTIONS:
        return PACKAGE_EXCEPTIONS[soname]
    name, _, version = soname.partition(".so")
    name = name.lower().replace("_", "-")  # package names have no capitals or underscores
    major = version.lstrip(".").split(".")[0]
    if not major:
        return name
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def _requested_plugin() -> str:
    """The first plugin QT_QPA_PLATFORM asks for ("xcb:option;wayland" -> "xcb"), else Qt's default."""
    requested = os.environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    return requested or DEFAULT_PLUGIN


def _platforms_dir() -> Path:
    spec = importlib.util.find_spec("PyQt6")
    if spec is None or not spec.submodule_search_locations:
        return Path()
    return Path(next(iter(spec.submodule_search_locations))) / "Qt6" / "plugins" / "platforms"


def _ldd(path: Path) -> str:
    try:
        return subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=LDD_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""  # no ldd (not glibc) or it hung: the other explanations still apply


def _main_line(qt_output: str) -> str:
    """Qt's first complaint (its lines start with a category such as ``qt.qpa.xcb:``), else the last line (the
    error ending a Python traceback)."""
    lines = [line.strip() for line in qt_output.splitlines() if line.strip()]
    complaints = [line for line in lines if line.startswith("qt.")]
    return (complaints or lines or ["no message"])[0 if complaints else -1]
