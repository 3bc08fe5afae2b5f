"""The Apache Kafka versions the suite runs, and their jars, fetched from Maven Central once.

The broker's POM leaves out the logging binding the release archive adds, so each release names
its own: log4j 2 for 4.x, reload4j for 3.9. The jars are copied by Maven's dependency plugin into
`<cache>/kafka-<version>/libs`, written under a lock into a temporary folder and renamed, so
concurrent test sessions share one complete copy.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
"""Named in full: Maven 3.8 resolves the bare `dependency:` prefix to an old plugin."""

MINIMUM_JAVA = 17
FETCH_TIMEOUT = 900.0


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot be run here: no Java 17, no Maven, or its jars cannot be fetched."""


@dataclass(frozen=True)
class Artifact:
    """A Maven coordinate."""

    group: str
    name: str
    version: str

    def dependency(self) -> str:
        """This artifact as a POM `<dependency>` element."""
        return (
            f"<dependency><groupId>{self.group}</groupId><artifactId>{self.name}</artifactId>"
            f"<version>{self.version}</version></dependency>"
        )


@dataclass(frozen=True)
class KafkaRelease:
    """One Apache Kafka version: its broker artifact, logging binding and logging flags."""

    version: str
    logging: tuple[Artifact, ...]
    log4j2: bool
    """Kafka 4.x logs through log4j 2; 3.9 through reload4j (log4j 1 syntax)."""

    @property
    def label(self) -> str:
        """Short name in test ids and reports: `kafka-4.4.0`."""
        return f"kafka-{self.version}"

    @property
    def major(self) -> int:
        """The major version: 4 or 3."""
        return int(self.version.split(".")[0])

    def artifacts(self) -> tuple[Artifact, ...]:
        """Everything the broker needs on its class path (Maven adds the transitive rest)."""
        return (Artifact("org.apache.kafka", "kafka_2.13", self.version), *self.logging)

    def pom(self) -> str:
        """A POM whose runtime dependencies are the broker's class path."""
        dependencies = "".join(artifact.dependency() for artifact in self.artifacts())
        return (
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>cxone-role-sync.test</groupId>"
            f"<artifactId>kafka-broker</artifactId><version>{self.version}</version>"
            f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>\n"
        )


def _log4j2(version: str) -> tuple[Artifact, ...]:
    group = "org.apache.logging.log4j"
    return tuple(
        Artifact(group, name, version) for name in ("log4j-slf4j-impl", "log4j-core", "log4j-api")
    )


KAFKA_4 = KafkaRelease("4.4.0", _log4j2("2.25.3"), log4j2=True)
"""The newest Kafka 4.x on Maven Central that runs on Java 17 (its POM still binds slf4j 1.7)."""

KAFKA_3 = KafkaRelease(
    "3.9.2",
    (
        Artifact("org.slf4j", "slf4j-reload4j", "1.7.36"),
        Artifact("ch.qos.reload4j", "reload4j", "1.2.25"),
    ),
    log4j2=False,
)
"""The newest Kafka 3.9.x: it still accepts the protocol versions 4.0 removed."""

RELEASES = {release.label: release for release in (KAFKA_4, KAFKA_3)}


def cache_root() -> Path:
    """Where fetched releases live: `$XDG_CACHE_HOME` or `~/.cache`, under `cxone-role-sync`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cxone-role-sync"


def java_major(java: str = "java") -> int | None:
    """The major version of the `java` on PATH, or None when there is none."""
    if shutil.which(java) is None:
        return None
    try:
        result = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    # Java 8 and older call themselves 1.8.
    return int(found.group(2) or 0) if major == 1 else major


def missing_tools() -> str | None:
    """Why Kafka cannot run here (no Java 17, no Maven), or None when it can."""
    major = java_major()
    if major is None:
        return "no java on PATH"
    if major < MINIMUM_JAVA:
        return f"java {major} on PATH, Kafka's broker needs {MINIMUM_JAVA}"
    if shutil.which("mvn") is None:
        return "no mvn (Maven) on PATH to fetch Kafka's jars"
    return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def class_path(release: KafkaRelease, root: Path | None = None) -> Path:
    """The folder of the release's jars, fetched with Maven on first use.

    Raises `KafkaUnavailable` with Maven's last lines when the fetch fails.
    """
    home = (root or cache_root()) / f"kafka-{release.version}"
    libs = home / "libs"
    if (libs / ".complete").exists():
        return libs
    with _locked(home / ".lock"):
        if (libs / ".complete").exists():
            return libs
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        try:
            pom = staging / "pom.xml"
            pom.write_text(release.pom())
            jars = staging / "jars"
            try:
                result = subprocess.run(
                    [
                        "mvn",
                        "-B",
                        "-q",
                        "-f",
                        str(pom),
                        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                        f"-DoutputDirectory={jars}",
                        "-DincludeScope=runtime",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=FETCH_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                raise KafkaUnavailable(
                    f"fetching Kafka {release.version} with mvn: {error}"
                ) from None
            if result.returncode != 0 or not any(jars.glob("kafka_2.13-*.jar")):
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise KafkaUnavailable(f"mvn could not fetch Kafka {release.version}:\n{tail}")
            (jars / ".complete").write_text(release.pom())
            if libs.exists():
                shutil.rmtree(libs)
            jars.rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs
