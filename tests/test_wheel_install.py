"""A wheel built from the repo works outside the checkout: package data is found and the demo runs.

An editable install hides missing package data (the files are read from the checkout), so this
builds the wheel, installs it into a fresh venv and runs everything from a folder outside the
repo.  The fresh venv takes its dependencies from the running environment's site-packages (a
plain path, so the editable install of the checkout is not on it); nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a copy: setuptools writes build/ beside the sources, and a stale build/lib of
    # the checkout would put deleted modules into the wheel
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", ".state", "build", "dist", "target",
                                                             "__pycache__", "*.egg-info", ".pytest_cache"))
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist",
                  src], cwd=tmp)
    assert "would be ignored" not in build.stdout + build.stderr, "package data declared as packages"
    wheels = sorted((tmp / "dist").glob("cmsearch-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    site = next((venv / "lib").glob("python*/site-packages"))
    deps = [p for p in sys.path if p.rstrip("/").endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (site / "zz_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheels[0]], cwd=tmp)
    return venv


def _clean_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENSEARCH_URL")}
    env["HOME"] = os.environ.get("HOME", str(tmp))
    return env


def test_wheel_holds_the_package_data(wheel_venv, tmp_path):
    probe = ("import engine.node as n, mappings, query_builder.profile as p, models, pathlib, json;"
             "print(json.dumps({'java': str(n.JAVA_DIR), 'pom': (n.JAVA_DIR/'pom.xml').is_file(),"
             "'launcher': any(n.JAVA_DIR.rglob('Launcher.java')), 'log4j': (n.JAVA_DIR/'config'/'log4j2.properties').is_file(),"
             "'profiles': sorted(x.stem for x in pathlib.Path(p.__file__).with_name('profiles').glob('*.json')),"
             "'glossary': sorted(x.stem for x in pathlib.Path(models.__file__).with_name('glossary').glob('*.json')),"
             "'mapping': bool(mappings.product_index_body(mappings.VectorDims(shared=384, image_feature=1280)))}))")
    import json

    out = json.loads(_run([wheel_venv / "bin" / "python", "-c", probe], cwd=tmp_path, env=_clean_env(tmp_path)).stdout)
    assert out["java"].startswith(str(wheel_venv)), out  # the installed copy, not the checkout
    assert out["pom"] and out["launcher"] and out["log4j"] and out["mapping"], out
    assert {"bm25", "hybrid_minmax", "image"} <= set(out["profiles"]), out
    assert {"colors", "grocery", "ikea_types"} <= set(out["glossary"]), out


@pytest.mark.engine
@pytest.mark.models
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_demo_runs_from_the_wheel(wheel_venv, local_engine, tmp_path):
    res = _run([wheel_venv / "bin" / "cmsearch", "demo", "--work-dir", tmp_path / "demo", "--per-class", "12",
                "--url", local_engine.url()], cwd=tmp_path, env=_clean_env(tmp_path), timeout=900)
    out = res.stdout
    assert "Traceback" not in out + res.stderr
    assert "hybrid_minmax" in out, out[-2000:]
