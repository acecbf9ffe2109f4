"""Local files read in one system call each, without Python's buffered file objects.

A compaction reads thousands of small files (manifests, data files) whose sizes the
metadata gives; a pyarrow or Python stream per file costs several times the read itself.
"""

import os

from pyiceberg.io.pyarrow import PyArrowFileIO


def local_path(location: str) -> str | None:
    """The local path of a `file://` or scheme-less location, else None."""
    if location.startswith("file:///"):
        return location[len("file://") :]  # what parse_location gives, without urlparse
    scheme, _, path = PyArrowFileIO.parse_location(location)
    return path if scheme == "file" else None


def read_local(path: str, size: int) -> bytes:
    """The file's bytes: one `read` of the size the metadata gives (and one more byte, to
    see the end); a file of another size is read to its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data
        parts = [data]
        while part := os.read(fd, 1 << 20):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(fd)
