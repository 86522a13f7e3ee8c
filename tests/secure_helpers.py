"""What the live tests of a secured node and of a secured cluster share: the engine under its own
state dir, clients and command lines run as a named user, a small generated catalog with photos,
and the search for secrets in everything that was printed or written.

Not a test module (no ``test_`` prefix): the modules import it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("CMSEARCH_MODELS_DIR", Path.home() / ".cache" / "cmsearch" / "models"))
ADMIN, INGEST, SEARCH, EVENTS = "admin", "cmsearch-ingest", "cmsearch-search", "cmsearch-events"


def fresh_secure_engine(state: Path, *, nodes: int = 1, heap: str):
    """A secured engine (``nodes`` nodes) under ``state``, emptied first (fresh users, certificates
    and data), sharing the test node's Maven build; a sibling dir when another session's runs there."""
    from engine import LocalEngine

    build = LocalEngine(state_dir=Path(os.environ.get("CMSEARCH_TEST_ENGINE_DIR", REPO / ".state" / "test-engine")))
    build.build()
    eng = LocalEngine(state_dir=state, secure=True, nodes=nodes, heap=heap)
    if eng.url() is not None:   # another session's node: run our own beside it
        eng = LocalEngine(state_dir=state.with_name(f"{state.name}-{os.getpid()}"), secure=True, nodes=nodes,
                          heap=heap)
    shutil.rmtree(eng.state_dir, ignore_errors=True)
    eng.state_dir.mkdir(parents=True)
    eng.build_dir.symlink_to(build.build_dir, target_is_directory=True)
    return eng


def running_secure_engine(env_var: str, dirname: str, *, timeout: float, nodes: int = 1, heap: str):
    """A test module's secured engine (or cluster): skipped without built models, made fresh under
    ``$env_var`` (default ``.state/<dirname>``), started, yielded, and stopped however the module ends.
    Used as ``yield from running_secure_engine(...)`` in a module-scoped fixture."""
    import pytest

    if not (MODELS / "manifest.json").is_file():
        pytest.skip(f"models not built at {MODELS} (cmsearch models build)")
    eng = fresh_secure_engine(Path(os.environ.get(env_var, REPO / ".state" / dirname)), nodes=nodes, heap=heap)
    try:
        eng.start(exit_with_parent=True, timeout=timeout)
        yield eng
    finally:
        eng.stop()


def password_files(sec, folder: Path) -> dict[str, Path]:
    """One 0600 password file per user of the secured node, for ``OPENSEARCH_PASSWORD_FILE``."""
    out = {}
    for user, pw in sec.credentials().passwords.items():
        p = folder / user
        p.write_text(pw + "\n")
        p.chmod(0o600)
        out[user] = p
    return out


def client_for(url: str, sec, user: str | None, password: str | None = None, **settings):
    from engine.client import ConnectionSettings

    return ConnectionSettings(url=url, user=user, password=password if password is not None else (
        sec.credentials().password(user) if user else None), ca_certs=str(sec.ca_file), **settings).client()


def make_cli(outputs: list[str]) -> Callable[..., subprocess.CompletedProcess]:
    """A runner of the cmsearch command line as a user (password from its file) that keeps every
    output in ``outputs``, for the search for secrets."""
    def cli(*args: str, user: str | None = None, password_file: Path | None = None, env: dict | None = None,
            cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_")}
        e["CMSEARCH_ENGINE_DIR"] = str(REPO / ".state" / "no-local-engine")   # never the user's own node
        e.update(env or {})
        if user:
            e["OPENSEARCH_USER"] = user
        if password_file:
            e["OPENSEARCH_PASSWORD_FILE"] = str(password_file)
        proc = subprocess.run([sys.executable, "-m", "cmsearch.cli", *args], capture_output=True, text=True,
                              env=e, cwd=cwd or REPO, timeout=timeout)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    return cli


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def write_catalog(folder: Path, n: int = 8) -> Path:
    """``n`` products with a photo each (four kinds of title, two brands), then one record without
    a title (line ``n + 1``: a reject)."""
    from PIL import Image

    (folder / "img").mkdir()
    rows = []
    for i in range(n):
        Image.new("RGB", (64, 64), ((30 * i) % 256, 120, (220 - 20 * i) % 256)).save(folder / "img" / f"p{i}.jpg",
                                                                                    "JPEG")
        rows.append({"id": f"p{i}", "title": ["红色 连衣裙", "蓝色 运动鞋", "黑色 双肩包", "白色 衬衫"][i % 4] + f" {i}",
                     "brand": ["northwind", "contoso"][i % 2], "category": ["服装", "女装"],
                     "price": 10 + i, "images": [f"img/p{i}.jpg"]})
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines.append(json.dumps({"id": "bad", "price": 3}))          # no title: a reject
    path = folder / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def secret_strings(sec) -> list[str]:
    """Every password of the secured node's users and lines from inside each private key it made."""
    found = list(sec.credentials().passwords.values())
    for key in sorted(sec.dir.glob("*key*.pem")):
        body = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]
        found += [body[1], body[-2]]
    return found


def places_with_secrets(texts: dict[str, str], secrets: list[str]) -> list[str]:
    """The names of the ``texts`` in which any of ``secrets`` appears."""
    return [where for where, text in texts.items() if any(s in text for s in secrets)]
