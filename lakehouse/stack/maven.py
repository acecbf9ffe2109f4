"""Fetch the stack's jars with Maven itself and cache them outside the repository.

A cached folder is complete or absent: each is built in a temporary sibling and renamed into
place, so a second `up` needs neither Maven nor the network.
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from lakehouse.errors import StackError
from lakehouse.stack.options import APICURIO_VERSION, KAFKA_VERSION
from lakehouse.stack.tools import find_maven

POM = Path(__file__).with_name("pom.xml")
APICURIO_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"


def kafka_libs_dir(cache: Path) -> Path:
    """Where the Kafka broker's jars live once fetched."""
    return cache / f"kafka-{KAFKA_VERSION}" / "libs"


def apicurio_dir(cache: Path) -> Path:
    """Where the unpacked Apicurio Registry distribution lives once fetched."""
    return cache / f"apicurio-registry-{APICURIO_VERSION}"


def _mvn(args: list[str], cwd: Path) -> None:
    command = [str(find_maven()), "-q", "-B", "-f", str(POM), *args]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StackError(f"cannot run Maven: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise StackError(f"Maven failed ({' '.join(args[:1])}), exit {done.returncode}:\n{tail}")


def _publish(staging: Path, target: Path) -> None:
    """Rename a finished staging folder into place; a concurrent winner is fine."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def ensure_kafka_libs(cache: Path) -> Path:
    """The folder of Kafka jars (plus the log4j2 binding), fetched on first use."""
    libs = kafka_libs_dir(cache)
    if libs.is_dir():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kafka-", dir=cache))
    try:
        _mvn(
            [
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={staging / 'libs'}",
            ],
            cwd=staging,
        )
        _publish(staging / "libs", libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def ensure_apicurio(cache: Path) -> Path:
    """The unpacked Apicurio Registry distribution (holds `quarkus-run.jar`), fetched once."""
    dist = apicurio_dir(cache)
    if (dist / "quarkus-run.jar").is_file():
        return dist
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".apicurio-", dir=cache))
    try:
        _mvn(
            ["dependency:copy", f"-Dartifact={APICURIO_ARTIFACT}", f"-DoutputDirectory={staging}"],
            cwd=staging,
        )
        archives = list(staging.glob("*.tar.gz"))
        if len(archives) != 1:
            raise StackError(f"Maven fetched no Apicurio archive into {staging}")
        unpacked = staging / "dist"
        with tarfile.open(archives[0]) as archive:
            archive.extractall(unpacked, filter="data")
        if not (unpacked / "quarkus-run.jar").is_file():
            raise StackError(f"{APICURIO_ARTIFACT} has no quarkus-run.jar at its top level")
        _publish(unpacked, dist)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dist
