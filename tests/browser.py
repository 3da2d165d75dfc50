"""Render a page in a real headless browser (Debian's chromium): its DOM, console and a screenshot.

`.ci/run` installs chromium (`apt-get install -y chromium`); on a machine
without it the browser tests skip, in CI (`CI` set) they fail.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from optional import in_ci

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0")


@dataclasses.dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]  # what the page wrote to the console (errors, CSP violations)
    screenshot: Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so the browser tests must run", pytrace=False)
        pytest.skip(message)
    return path


def render(page: Path, scratch: Path, *, width: int = 1200, height: int = 2400) -> Rendered:
    """Load `page` from file:// twice: once for the DOM and console, once for a screenshot."""
    binary = chromium()
    common = [binary, *FLAGS, f"--user-data-dir={scratch / 'profile'}", f"--window-size={width},{height}"]
    url = page.resolve().as_uri()
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = scratch / f"{page.stem}.png"
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120, check=True)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(dom.stdout, console, shot)
