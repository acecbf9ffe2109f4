"""The local Kafka broker: one KRaft node that is broker and controller at once."""

import base64
import socket
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from lakehouse.errors import StackError
from lakehouse.settings import Settings
from lakehouse.stack.options import StackOptions
from lakehouse.stack.processes import port_in_use

NAME = "kafka"

# log4j2 (properties syntax, so no YAML module is needed): everything to stdout, which the
# stack redirects into kafka/kafka.log.
LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaFiles:
    """Where the broker keeps its state under `$LAKEHOUSE_HOME/kafka/`."""

    def __init__(self, home: Path) -> None:
        self.dir = home / NAME
        self.data = self.dir / "data"
        self.properties = self.dir / "server.properties"
        self.log4j = self.dir / "log4j2.properties"
        self.log = self.dir / "kafka.log"
        self.pid = self.dir / "kafka.pid"


def controller_port(settings: Settings, options: StackOptions) -> int:
    """The KRaft controller port: `LAKEHOUSE_KAFKA_CONTROLLER_PORT`, else broker port + 1,
    else (that one is taken or is the registry's) any free port. The quorum is static
    (`controller.quorum.voters`), so the port may differ from one start to the next."""
    if options.kafka_controller_port:
        return options.kafka_controller_port
    port = settings.kafka_port + 1
    if port != settings.registry_port and not port_in_use(settings.bind_host, port):
        return port
    with socket.socket() as sock:
        sock.bind((settings.bind_host, 0))
        return int(sock.getsockname()[1])


def server_properties(settings: Settings, controller: int, data: Path) -> str:
    """server.properties of a single combined node bound to `settings.bind_host`."""
    host, broker = settings.bind_host, settings.kafka_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller}",
        "listeners": f"PLAINTEXT://{host}:{broker},CONTROLLER://{host}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{broker}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def write_config(files: KafkaFiles, settings: Settings, controller: int) -> None:
    """(Re)write server.properties and the log4j2 config; ports may change between runs."""
    files.data.mkdir(parents=True, exist_ok=True)
    files.properties.write_text(server_properties(settings, controller, files.data))
    files.log4j.write_text(LOG4J2)


def _classpath(libs: Path) -> str:
    return str(libs / "*")


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def format_storage(java: Path, libs: Path, files: KafkaFiles) -> bool:
    """Format the log dir once (kafka.tools.StorageTool); False if it already was."""
    if (files.data / "meta.properties").is_file():
        return False
    command = [
        str(java),
        "-cp",
        _classpath(libs),
        f"-Dlog4j2.configurationFile={files.log4j}",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        new_cluster_id(),
        "--config",
        str(files.properties),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")
    return True


def broker_command(java: Path, libs: Path, files: KafkaFiles, options: StackOptions) -> list[str]:
    """The java command line of the broker."""
    return [
        str(java),
        f"-Xmx{options.kafka_heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={files.log4j}",
        f"-Dkafka.logs.dir={files.dir}",
        "-cp",
        _classpath(libs),
        "kafka.Kafka",
        str(files.properties),
    ]


def answering(settings: Settings) -> bool:
    """Whether the broker serves metadata (AdminClient.list_topics)."""
    host, port = settings.bind_host, settings.kafka_port
    if not port_in_use(host, port):
        return False
    admin = AdminClient(settings.kafka_client_config(log_level=0))  # type: ignore[arg-type]
    try:
        admin.list_topics(timeout=3)
    except KafkaException:
        return False
    return True
