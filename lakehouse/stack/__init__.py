"""The real local streaming stack: Apache Kafka (KRaft) and Apicurio Registry, fetched by Maven
and run as background processes under `$LAKEHOUSE_HOME`."""

from lakehouse.stack.local import LocalStack, ServiceStatus, StackStatus
from lakehouse.stack.options import APICURIO_VERSION, KAFKA_VERSION, StackOptions

__all__ = [
    "APICURIO_VERSION",
    "KAFKA_VERSION",
    "LocalStack",
    "ServiceStatus",
    "StackOptions",
    "StackStatus",
]
