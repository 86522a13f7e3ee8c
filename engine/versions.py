"""Which OpenSearch the local node is built as, and the Java that runs it.

The OpenSearch version is a choice (``version``, else ``CMSEARCH_ENGINE_VERSION``, else 2.19):
each version has its own pom, Maven build directory (``build`` for 2.19, ``build-<version>``
otherwise, so both can be built side by side) and Java: 3.x needs Java 21+, found through
``CMSEARCH_JAVA_HOME``, ``JAVA_HOME``, ``java`` on PATH or the JDKs under ``/usr/lib/jvm``.  A
node's data records the version that wrote it, and a node of another version is refused there
(3.x upgrades 2.x data for good, and 2.x cannot read 3.x data).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError

# Plugins loaded from the class path; ones whose classes are missing are skipped by the launcher.
_PLUGINS_2 = (
    "org.opensearch.transport.Netty4Plugin",
    "org.opensearch.analysis.common.CommonAnalysisPlugin",
    "org.opensearch.painless.PainlessPlugin",
    "org.opensearch.index.mapper.MapperExtrasPlugin",
    "org.opensearch.index.reindex.ReindexPlugin",
    "org.opensearch.knn.plugin.KNNPlugin",
    "org.opensearch.neuralsearch.plugin.NeuralSearch",
)
# 3.x renamed the modules' plugin classes; no neural-search 3.x zip is on Maven Central
_PLUGINS_3 = (
    "org.opensearch.transport.Netty4ModulePlugin",
    "org.opensearch.analysis.common.CommonAnalysisModulePlugin",
    "org.opensearch.painless.PainlessModulePlugin",
    "org.opensearch.index.mapper.MapperExtrasModulePlugin",
    "org.opensearch.index.reindex.ReindexModulePlugin",
    "org.opensearch.knn.plugin.KNNPlugin",
)


@dataclass(frozen=True)
class EngineVersion:
    """One OpenSearch version the local node can be built as: its pom, Java and plugins."""

    name: str                  # what ``--version`` takes
    opensearch: str            # the OpenSearch release
    pom: str                   # under engine/java
    java: int                  # the oldest Java feature release it runs on
    plugin_classes: tuple[str, ...]
    jvm_flags: tuple[str, ...] = ()

    @property
    def build_name(self) -> str:
        """The build directory under the state dir (2.19 keeps the one it always had)."""
        return "build" if self.name == DEFAULT_VERSION else f"build-{self.name}"


DEFAULT_VERSION = "2.19"
ENGINE_VERSIONS = {v.name: v for v in (
    EngineVersion("2.19", "2.19.1", "pom.xml", 17, _PLUGINS_2),
    # Lucene 10 calls the foreign-memory API: allowed up front instead of warned about
    EngineVersion("3.5", "3.5.0", "pom-3.5.xml", 21, _PLUGINS_3, ("--enable-native-access=ALL-UNNAMED",)),
)}


def engine_version(name: str | None = None) -> EngineVersion:
    """The version ``name`` (``2.19``, ``3.5``, or the full release such as ``3.5.0``); None means
    ``CMSEARCH_ENGINE_VERSION``, else 2.19."""
    wanted = name if name is not None else (os.environ.get("CMSEARCH_ENGINE_VERSION") or DEFAULT_VERSION)
    key = wanted.strip()
    for v in ENGINE_VERSIONS.values():
        if key in (v.name, v.opensearch):
            return v
    source = "" if name is not None else " (from CMSEARCH_ENGINE_VERSION)"
    raise EngineError(f"unknown engine version {wanted!r}{source}; the local node can be built as "
                      f"{', '.join(ENGINE_VERSIONS)}")


# ---- Java ------------------------------------------------------------------------------
JVM_ROOTS = (Path("/usr/lib/jvm"), Path("/opt/java"), Path("/usr/java"))
_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="?([0-9][^"\s]*)"?', re.M)
_VERSION_LINE = re.compile(r'version "([0-9][^"]*)"')


def _feature(version: str) -> int | None:
    """The feature release of a Java version string (``17.0.15`` -> 17, ``1.8.0_392`` -> 8)."""
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    return int(parts[1]) if major == 1 and len(parts) > 1 else major


def java_feature(home: Path) -> int | None:
    """The Java feature release of the JDK or JRE at ``home`` (its ``release`` file, else what
    ``bin/java -version`` says); None when there is no working java there."""
    java = home / "bin" / "java"
    if not java.is_file():
        return None
    try:
        m = _RELEASE_VERSION.search((home / "release").read_text(errors="replace"))
        if m:
            return _feature(m.group(1))
    except OSError:
        pass
    try:
        out = subprocess.run([str(java), "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_LINE.search(out)
    return _feature(m.group(1)) if m else None


def _java_candidates() -> list[tuple[str, Path]]:
    """Where a JDK may be, in the order they are preferred: ``JAVA_HOME``, ``java`` on PATH, then
    the JDKs installed under the usual roots (newest first)."""
    found: list[tuple[str, Path]] = []
    if os.environ.get("JAVA_HOME"):
        found.append(("JAVA_HOME", Path(os.environ["JAVA_HOME"]).expanduser()))
    on_path = shutil.which("java")
    if on_path:
        found.append(("java on PATH", Path(os.path.realpath(on_path)).parent.parent))
    installed = []
    for root in JVM_ROOTS:
        try:
            installed += [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
        except OSError:
            continue
    versions = {p: java_feature(p) for p in installed}
    for p in sorted(installed, key=lambda p: (-(versions[p] or 0), str(p))):
        found.append((str(p.parent), p))
    return found


def find_java(minimum: int, purpose: str) -> Path:
    """The home of a Java ``minimum``+ to run ``purpose`` with.

    ``CMSEARCH_JAVA_HOME`` is taken as given (an older Java there is an error, not skipped);
    otherwise the first of :func:`_java_candidates` that is new enough.
    """
    explicit = os.environ.get("CMSEARCH_JAVA_HOME")
    if explicit:
        home = Path(explicit).expanduser()
        feature = java_feature(home)
        if feature is None:
            raise EngineError(f"CMSEARCH_JAVA_HOME={home} holds no working bin/java")
        if feature < minimum:
            raise EngineError(f"{purpose} needs Java {minimum} or newer; CMSEARCH_JAVA_HOME={home} is Java {feature}")
        return home
    seen = []
    for where, home in _java_candidates():
        feature = java_feature(home)
        if feature is not None and feature >= minimum:
            return home
        if feature is not None:
            seen.append(f"{home} (Java {feature}, {where})")
    found = "; found only " + ", ".join(dict.fromkeys(seen)) if seen else "; found no Java at all"
    raise EngineError(f"{purpose} needs Java {minimum} or newer{found}. Install a JDK {minimum}+ and point "
                      "CMSEARCH_JAVA_HOME (or JAVA_HOME) at it")
