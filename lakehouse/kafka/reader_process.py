"""Read Kafka in a child process that streams each batch back as Arrow.

Building a Python object per message is the costliest single step of ingestion and holds
the GIL the whole time: in the ingesting process it leaves decoding and committing waiting.
A child process does the reading (`read_batches`, unchanged) on another core and sends
every batch through a pipe: a JSON header line, then the batch as an Arrow IPC stream.
The parent gets the same `RawBatch`es `read_batches` yields, in order; it never commits
anything the child did not read, so exactly-once is untouched.

Once connected, the child says `{"ready": true}`: until then, which takes a few tenths of a
second, the parent may read the first batches itself (`ready()` tells it when to hand over).

The child reads only as far ahead as the pipe lets it (one batch): memory stays bounded by
the batch limits. It exits when the ranges are read, when the parent closes the pipe (it
stopped, or died: the next write fails), or after writing an error header, which the
parent raises as `KafkaReadError`.
"""

import contextlib
import json
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from lakehouse.kafka.offsets import PartitionRange
from lakehouse.kafka.reader import KafkaReadError, RawBatch, read_batches
from lakehouse.pipeline import Background

_COLUMNS = ("partitions", "offsets", "timestamps_ms", "keys", "values")
_PIPE_BYTES = 1 << 20  # a larger pipe: fewer wake-ups per batch (Linux caps it)


class ReaderProcess:
    """A child process that reads Kafka for this one; start it early, it imports meanwhile."""

    def __init__(self, consumer_config: Mapping[str, object], topic: str) -> None:
        # The child imports this package from where the parent has it, installed or not.
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        _grow_pipe(self._child.stdout)
        # The consumer first: it connects and learns the topic's leaders while the ranges are
        # planned (the first fetch then starts at once).
        self._topic = topic
        hello = {"config": dict(consumer_config), "topic": topic}
        self._child.stdin.write(json.dumps(hello).encode() + b"\n")
        self._child.stdin.flush()
        self._ready = False

    def ready(self) -> bool:
        """True once the child has connected and waits for its ranges (never blocks)."""
        stdout = self._child.stdout
        assert stdout is not None
        if not self._ready and select.select([stdout], [], [], 0)[0]:
            line = stdout.readline()  # the child writes this line whole, right away
            if json.loads(line or b"{}").get("ready"):
                self._ready = True
            else:
                raise KafkaReadError(f"reading {self._topic}: the reader process failed to start")
        return self._ready

    def batches(
        self,
        ranges: Sequence[PartitionRange],
        *,
        max_records: int,
        max_bytes: int,
        edge_max_records: int | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[RawBatch]:
        """`read_batches` run by the child; yields its batches in order. Call once.

        The request goes to the child now, not at the first `next`: it starts reading while
        the caller gets ready. Raises KafkaReadError when the child reports a read error or
        ends without finishing.
        """
        child, topic = self._child, self._topic
        assert child.stdin is not None and child.stdout is not None
        request = {
            "ranges": [[r.partition, r.start, r.end] for r in ranges],
            "max_records": max_records,
            "max_bytes": max_bytes,
            "edge_max_records": edge_max_records,
        }
        try:
            child.stdin.write(json.dumps(request).encode() + b"\n")
            child.stdin.close()
        except BrokenPipeError as exc:
            raise KafkaReadError(f"reading {topic}: the reader process is gone") from exc
        if not self._ready:
            _skip_ready(child.stdout, topic)
        return _received(child.stdout, topic, stop)

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended, None while it runs."""
        return self._child.poll()

    def close(self) -> None:
        """Stop the child (if still running) and reap it."""
        child = self._child
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def __enter__(self) -> "ReaderProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _received(stream: IO[bytes], topic: str, stop: Callable[[], bool]) -> Iterator[RawBatch]:
    while not stop():
        batch = _receive(stream, topic)
        if batch is None:
            return
        yield batch


def _skip_ready(stream: IO[bytes], topic: str) -> None:
    """Wait for the child's ready line (its first), which `ready()` has not read."""
    line = stream.readline()
    if not json.loads(line or b"{}").get("ready"):
        raise KafkaReadError(f"reading {topic}: the reader process failed to start")


def _receive(stream: IO[bytes], topic: str) -> RawBatch | None:
    """The next batch from the child, or None once it has read every range."""
    line = stream.readline()
    if not line:
        raise KafkaReadError(f"reading {topic}: the reader process ended unexpectedly")
    header: dict[str, Any] = json.loads(line)
    if "error" in header:
        raise KafkaReadError(header["error"])
    if header.get("done"):
        return None
    body = stream.read(header["body"])
    if len(body) != header["body"]:
        raise KafkaReadError(f"reading {topic}: the reader process ended mid-batch")
    [record_batch] = pa.ipc.open_stream(pa.py_buffer(body))  # one per batch: no copy
    columns = {name: record_batch.column(name) for name in _COLUMNS}
    return RawBatch(
        topic=topic,
        nbytes=header["nbytes"],
        start_offsets={int(p): o for p, o in header["start"].items()},
        next_offsets={int(p): o for p, o in header["next"].items()},
        **columns,
    )


def _send(stream: IO[bytes], batch: RawBatch) -> None:
    record_batch = pa.record_batch({name: getattr(batch, name) for name in _COLUMNS})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, record_batch.schema) as writer:
        writer.write_batch(record_batch)
    body = sink.getvalue()
    header = {
        "nbytes": batch.nbytes,
        "start": batch.start_offsets,
        "next": batch.next_offsets,
        "body": body.size,
    }
    stream.write(json.dumps(header).encode() + b"\n")
    stream.write(body)
    stream.flush()


def _grow_pipe(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _child() -> None:
    """The child's side: config, then the request, from stdin; the batches to stdout.

    Batch N is written by a sender thread while batch N+1 is read.
    """
    from confluent_kafka import Consumer

    hello = json.loads(sys.stdin.buffer.readline())
    topic = hello["topic"]
    consumer = Consumer(hello["config"])
    out = sys.stdout.buffer
    try:
        with contextlib.suppress(Exception):  # a warm-up: reading reports the real errors
            consumer.list_topics(topic, timeout=10)
        out.write(b'{"ready": true}\n')
        out.flush()
        request = json.loads(sys.stdin.buffer.readline())
        ranges = [PartitionRange(p, s, e) for p, s, e in request["ranges"]]
        with Background("lakehouse-send") as sender:
            for batch in read_batches(
                consumer,
                topic,
                ranges,
                max_records=request["max_records"],
                max_bytes=request["max_bytes"],
                edge_max_records=request["edge_max_records"],
                stop=sender.failed.is_set,
            ):
                sender.submit(_send, out, batch)
            sender.wait()
        message: dict[str, object] = {"done": True}
    except KafkaReadError as exc:
        message = {"error": str(exc)}
    except (BrokenPipeError, json.JSONDecodeError):
        # The parent stopped listening: nothing more to say, and nothing at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return
    except Exception as exc:  # anything else still reaches the parent, named
        message = {"error": f"reading {topic}: {type(exc).__name__}: {exc}"}
    finally:
        consumer.close()
    with contextlib.suppress(BrokenPipeError):
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _child()
    # Everything is sent and the consumer closed: skip the interpreter's teardown, whose
    # collection of every object would take CPU from the parent's last batches.
    os._exit(0)
