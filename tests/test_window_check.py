"""The window opens or says why: a Qt that cannot start its platform plugin is one line and exit code 2, not an
abort; missing libraries are named with the Debian/Ubuntu packages that provide them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app import window_check
from app.window_check import debian_package, describe_failure, window_problem
from tests.helpers import ROOT
from tests.test_window import write_video

BAR_S = 30  # the bar: the answer comes within this


def test_an_unknown_platform_plugin_is_one_line_and_exit_code_2(tmp_path):
    clip = write_video(tmp_path / "clip.avi", 5)
    env = {**os.environ, "QT_QPA_PLATFORM": "nosuchplugin"}
    begin = time.monotonic()
    done = subprocess.run(
        [sys.executable, "main.py", "--source", str(clip)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BAR_S,
    )
    elapsed = time.monotonic() - begin
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and done.stdout == ""
    assert lines[0].startswith('error: the window cannot open: Qt has no platform plugin "nosuchplugin"')
    assert "--no-gui" in lines[0] and "offscreen" in lines[0]  # the way out, and the plugins this Qt has
    assert elapsed < BAR_S


def test_the_platform_the_tests_use_passes_the_check():
    assert os.environ["QT_QPA_PLATFORM"] == "offscreen"  # set by conftest.py
    assert window_problem() is None


QT_XCB_FAILURE = """\
qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.
qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was found.
This application failed to start because no Qt platform plugin could be initialized.

Available platform plugins are: minimal, offscreen, xcb, wayland.
"""
LDD_MISSING = """\
\tlibQt6XcbQpa.so.6 => /site-packages/PyQt6/Qt6/lib/libQt6XcbQpa.so.6 (0x00007f1f574c3000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
"""


def test_libraries_the_xcb_plugin_misses_are_named_with_their_packages(monkeypatch):
    monkeypatch.setattr(window_check, "_ldd", lambda path: LDD_MISSING if path.name == "libqxcb.so" else "")
    line = describe_failure(QT_XCB_FAILURE)
    assert "Qt's xcb platform plugin needs system libraries that are missing" in line
    assert "(libxcb-icccm.so.4, libxcb-keysyms.so.1)" in line  # each once, in ldd's order
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1;" in line
    assert line.endswith("--no-gui --init-box X,Y,W,H") and "\n" not in line


def test_a_library_qt_itself_could_not_load_is_named_too(monkeypatch):
    monkeypatch.setattr(window_check, "_ldd", lambda path: "")
    trace = "Traceback (most recent call last):\n  ...\nImportError: libEGL.so.1: cannot open shared object file"
    assert "sudo apt-get install libegl1;" in describe_failure(trace)


def test_no_display_is_said_as_such(monkeypatch):
    monkeypatch.setattr(window_check, "_ldd", lambda path: "")
    monkeypatch.delenv("DISPLAY", raising=False)
    output = 'qt.qpa.xcb: could not connect to display \nqt.qpa.plugin: Could not load the Qt platform plugin "xcb"'
    line = describe_failure(output)
    assert "no X display to show it on (DISPLAY is not set)" in line and "--no-gui" in line


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-render-util.so.0", "libxcb-render-util0"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libX11-xcb.so.1", "libx11-xcb1"),
        ("libEGL.so.1", "libegl1"),
        ("libdbus-1.so.3", "libdbus-1-3"),
        ("libglib-2.0.so.0", "libglib2.0-0"),
    ],
)
def test_debian_package_names(soname, package):
    assert debian_package(soname) == package
