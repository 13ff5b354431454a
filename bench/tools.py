"""Command-line tools the benchmarks run (wrk, valgrind): found, or installed from Debian's packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["ensure_tool"]


def ensure_tool(command: str, *, package: str, install: bool) -> str | None:
    """The path of ``command``; installs ``package`` with apt-get when allowed and running as root.

    None when it is not there and could not be installed (the caller says what to do).
    """
    found = shutil.which(command)
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{command} not found: installing the Debian package (apt-get install {package})", file=sys.stderr)
        quiet = {"stdout": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, **quiet
        )
        return shutil.which(command)
    return None
