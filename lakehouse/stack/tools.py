"""Find the programs the local stack needs: a JDK of a minimum version and Maven."""

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from lakehouse.errors import MissingToolError

JAVA_HINT = (
    "install a JDK {need}+ (Debian: `apt-get install openjdk-{need}-jdk-headless`, or Temurin "
    "{need}+), put its `java` on PATH or set LAKEHOUSE_JAVA_HOME / JAVA_HOME"
)
MAVEN_HINT = "install Apache Maven 3.6+ (Debian: `apt-get install maven`) and put `mvn` on PATH"

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@lru_cache(maxsize=32)
def java_major(java: Path) -> int | None:
    """The major version of a `java` binary (17 for 17.0.15, 8 for 1.8), or None if it fails."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _java_candidates(java_home: Path | None, jvm_dirs: str, path: str | None) -> Iterator[Path]:
    homes = [java_home, Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None]
    for home in homes:
        if home is not None:
            yield home.expanduser() / "bin" / "java"
    on_path = shutil.which("java", path=path)
    if on_path:
        yield Path(on_path)
    for folder in filter(None, jvm_dirs.split(os.pathsep)):
        root = Path(folder)
        if root.is_dir():
            for home in sorted(root.iterdir()):
                yield home / "bin" / "java"


def find_java(
    min_major: int,
    *,
    java_home: Path | None = None,
    jvm_dirs: str = "/usr/lib/jvm",
    path: str | None = None,
    purpose: str = "the local stack",
) -> Path:
    """The first `java` of at least `min_major`: java_home, $JAVA_HOME, PATH, then jvm_dirs.

    Raises MissingToolError naming what to install when none fits.
    """
    seen: list[str] = []
    for candidate in _java_candidates(java_home, jvm_dirs, path):
        resolved = candidate.resolve()
        if not resolved.is_file() or not os.access(resolved, os.X_OK):
            continue
        major = java_major(resolved)
        if major is not None and major >= min_major:
            return resolved
        seen.append(f"{candidate} (Java {major})")
    found = f" Found only: {', '.join(dict.fromkeys(seen))}." if seen else " Found none."
    raise MissingToolError(
        f"{purpose} needs Java {min_major}+.{found} To fix: {JAVA_HINT.format(need=min_major)}."
    )


def find_maven(path: str | None = None) -> Path:
    """The `mvn` on PATH, or MissingToolError with an install hint."""
    mvn = shutil.which("mvn", path=path)
    if mvn is None:
        raise MissingToolError(
            f"Maven (`mvn`) is needed to fetch the stack's jars once. To fix: {MAVEN_HINT}."
        )
    return Path(mvn)
