"""`LocalStack`: bring the local Kafka broker and schema registry up, down, and report on them."""

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.errors import StackError
from lakehouse.settings import Settings
from lakehouse.stack import kafka, registry
from lakehouse.stack.maven import ensure_apicurio, ensure_kafka_libs
from lakehouse.stack.options import KAFKA_MIN_JAVA, REGISTRY_MIN_JAVA, StackOptions
from lakehouse.stack.processes import (
    port_in_use,
    rss_bytes,
    running_pid,
    start_detached,
    stop,
    wait_until_answering,
)
from lakehouse.stack.tools import find_java


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack as it is now."""

    name: str
    address: str
    pid: int | None
    answering: bool
    log_file: Path
    rss_bytes: int | None = None

    @property
    def running(self) -> bool:
        """Whether the process recorded in its pid file is alive."""
        return self.pid is not None


@dataclass(frozen=True)
class StackStatus:
    """Every service of the stack, in start order."""

    services: tuple[ServiceStatus, ...] = field(default_factory=tuple)

    @property
    def running(self) -> bool:
        """All services have a live process."""
        return all(service.running for service in self.services)

    @property
    def answering(self) -> bool:
        """All services answer requests."""
        return all(service.answering for service in self.services)

    def service(self, name: str) -> ServiceStatus:
        """The status of the service called `name`."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


class LocalStack:
    """The local Kafka broker and Apicurio registry, as background processes under
    `settings.home_dir`, on the ports `settings` names."""

    def __init__(self, settings: Settings, options: StackOptions | None = None) -> None:
        self.settings = settings
        self.options = options or StackOptions()
        self.home = settings.home_dir
        self.kafka_files = kafka.KafkaFiles(self.home)
        self.registry_files = registry.RegistryFiles(self.home)

    # -- public -----------------------------------------------------------------------------

    def up(self) -> StackStatus:
        """Start whatever is not running, wait until every service answers, report."""
        with self._locked():
            kafka_pid = running_pid(self.kafka_files.pid)
            registry_pid = running_pid(self.registry_files.pid)
            # Tools and jars first, so that a missing one fails before anything starts.
            kafka_java = registry_java = libs = dist = None
            if kafka_pid is None:
                kafka_java = self._java(KAFKA_MIN_JAVA, "Kafka")
                libs = ensure_kafka_libs(self.options.cache_path)
            if registry_pid is None:
                registry_java = self._java(REGISTRY_MIN_JAVA, "Apicurio Registry")
                dist = ensure_apicurio(self.options.cache_path)
            started: list[Path] = []
            try:
                if kafka_java is not None and libs is not None:
                    kafka_pid = self._start_kafka(kafka_java, libs)
                    started.append(self.kafka_files.pid)
                assert kafka_pid is not None
                self._wait(
                    kafka_pid,
                    kafka.NAME,
                    self.kafka_files.log,
                    lambda: kafka.answering(self.settings),
                )
                if registry_java is not None and dist is not None:
                    registry_pid = self._start_registry(registry_java, dist)
                    started.append(self.registry_files.pid)
                assert registry_pid is not None
                self._wait(
                    registry_pid,
                    registry.NAME,
                    self.registry_files.log,
                    lambda: registry.answering(self.settings),
                )
            except BaseException:
                for pid_file in reversed(started):
                    stop(pid_file, self.options.stop_timeout_seconds)
                raise
            return self.status()

    def down(self) -> None:
        """Stop the registry, then the broker (SIGTERM, then SIGKILL); data stays."""
        with self._locked():
            for pid_file in (self.registry_files.pid, self.kafka_files.pid):
                stop(pid_file, self.options.stop_timeout_seconds)

    def status(self) -> StackStatus:
        """Which services run (by pid file) and answer."""
        kafka_pid = running_pid(self.kafka_files.pid)
        registry_pid = running_pid(self.registry_files.pid)
        return StackStatus(
            services=(
                ServiceStatus(
                    name=kafka.NAME,
                    address=f"{self.settings.bind_host}:{self.settings.kafka_port}",
                    pid=kafka_pid,
                    answering=kafka_pid is not None and kafka.answering(self.settings),
                    log_file=self.kafka_files.log,
                    rss_bytes=rss_bytes(kafka_pid) if kafka_pid else None,
                ),
                ServiceStatus(
                    name=registry.NAME,
                    address=registry.base_url(self.settings),
                    pid=registry_pid,
                    answering=registry_pid is not None and registry.answering(self.settings),
                    log_file=self.registry_files.log,
                    rss_bytes=rss_bytes(registry_pid) if registry_pid else None,
                ),
            )
        )

    # -- steps ------------------------------------------------------------------------------

    def _java(self, min_major: int, purpose: str) -> Path:
        return find_java(
            min_major,
            java_home=self.options.java_home,
            jvm_dirs=self.options.jvm_dirs,
            purpose=purpose,
        )

    def _check_free(self, name: str, port: int) -> None:
        if port_in_use(self.settings.bind_host, port):
            raise StackError(
                f"cannot start {name}: {self.settings.bind_host}:{port} is already in use by a "
                "process this stack did not start (another stack? set other ports)"
            )

    def _start_kafka(self, java: Path, libs: Path) -> int:
        files = self.kafka_files
        self._check_free("Kafka", self.settings.kafka_port)
        controller = kafka.controller_port(self.settings, self.options)
        self._check_free("the Kafka controller", controller)
        kafka.write_config(files, self.settings, controller)
        kafka.format_storage(java, libs, files)
        return start_detached(
            kafka.broker_command(java, libs, files, self.options),
            cwd=files.dir,
            log_file=files.log,
            pid_file=files.pid,
        )

    def _start_registry(self, java: Path, dist: Path) -> int:
        files = self.registry_files
        self._check_free("the registry", self.settings.registry_port)
        files.tmp.mkdir(parents=True, exist_ok=True)
        return start_detached(
            registry.registry_command(java, dist, self.settings, self.options, files),
            cwd=files.dir,
            log_file=files.log,
            pid_file=files.pid,
        )

    def _wait(self, pid: int, name: str, log_file: Path, answering: Callable[[], bool]) -> None:
        wait_until_answering(
            answering,
            pid=pid,
            name=name,
            log_file=log_file,
            timeout=self.options.start_timeout_seconds,
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per home folder."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
