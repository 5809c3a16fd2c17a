"""Headless Chromium for tests that must look at a page the way a person would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]


def chromium() -> str:
    """Path of the chromium binary; skips the test, saying how to get it, when absent."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless chromium not installed: run `make system-deps` (Debian package chromium)")


def screenshot(url: str, out_png: Path, width: int = 1200, height: int = 2400) -> Path:
    """Render `url` in headless Chromium and save a PNG screenshot."""
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}",
               f"--window-size={width},{height}", f"--screenshot={out_png}", url]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out_png


def dump_dom(url: str) -> str:
    """The DOM after Chromium ran the page's scripts (to check what a browser really shows)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
        done = subprocess.run(cmd, check=True, capture_output=True, timeout=120, text=True)
    return done.stdout
