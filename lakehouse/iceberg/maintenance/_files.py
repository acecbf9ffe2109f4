"""What table metadata references, and what is on storage: the two sides of file cleanup."""

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyarrow import fs as pafs
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import DataFileContent, ManifestEntry, ManifestEntryStatus, ManifestFile
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

from lakehouse.iceberg.maintenance._avro import read_manifests


@dataclass
class FileSet:
    """Paths by kind, with sizes where the metadata knows them."""

    data: set[str] = field(default_factory=set)
    deletes: set[str] = field(default_factory=set)
    manifests: set[str] = field(default_factory=set)
    manifest_lists: set[str] = field(default_factory=set)
    metadata: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)

    def all(self) -> set[str]:
        return self.data | self.deletes | self.manifests | self.manifest_lists | self.metadata

    def minus(self, other: "FileSet") -> "FileSet":
        """Files in self that `other` does not hold (compared by normalized path)."""
        keep = {normalize(p) for p in other.all()}

        def rest(paths: set[str]) -> set[str]:
            return {p for p in paths if normalize(p) not in keep}

        return FileSet(
            data=rest(self.data),
            deletes=rest(self.deletes),
            manifests=rest(self.manifests),
            manifest_lists=rest(self.manifest_lists),
            metadata=rest(self.metadata),
            sizes=self.sizes,
        )


def normalize(location: str) -> str:
    """A location as storage lists it: `file:///a/b`, `/a/b` → `/a/b`; `s3://bkt/k` → `bkt/k`."""
    _, _, path = PyArrowFileIO.parse_location(location)
    return os.path.normpath(path) if path.startswith("/") else path


def metadata_files(metadata: TableMetadata, metadata_location: str) -> set[str]:
    """The current metadata file, its log of previous versions, and statistics files."""
    files = {metadata_location, *(entry.metadata_file for entry in metadata.metadata_log)}
    files.update(stat.statistics_path for stat in metadata.statistics)
    files.update(stat.statistics_path for stat in metadata.partition_statistics)
    return files


def reachable_files(
    io: FileIO,
    snapshots: Iterable[Snapshot],
    *,
    live_entries_only: bool,
    cache: dict[str, list[tuple[str, DataFileContent, int]]] | None = None,
) -> FileSet:
    """Manifest lists, manifests and content files of `snapshots`.

    `live_entries_only` skips entries marked deleted: a reader of the snapshot never opens
    them (expiry's view). Orphan removal keeps them all, to stay on the safe side.
    `cache` (manifest path → entries) saves re-reading manifests shared by snapshots.
    """
    found = FileSet()
    manifests: dict[str, ManifestFile] = {}
    snapshots = list(snapshots)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for snapshot, listed in zip(
            snapshots, pool.map(lambda s: s.manifests(io), snapshots), strict=True
        ):
            found.manifest_lists.add(snapshot.manifest_list)
            for manifest in listed:
                manifests.setdefault(manifest.manifest_path, manifest)
    cache = {} if cache is None else cache
    todo = [m for path, m in manifests.items() if path not in cache]
    for manifest, entries in zip(todo, read_manifests(io, todo), strict=True):
        cache[manifest.manifest_path] = _files_of(entries, live_entries_only)
    for path, manifest in manifests.items():
        found.manifests.add(path)
        found.sizes[path] = manifest.manifest_length
        for file_path, content, size in cache[path]:
            (found.data if content == DataFileContent.DATA else found.deletes).add(file_path)
            found.sizes[file_path] = size
    return found


def _files_of(
    entries: list[ManifestEntry], live_only: bool
) -> list[tuple[str, DataFileContent, int]]:
    return [
        (e.data_file.file_path, e.data_file.content, e.data_file.file_size_in_bytes)
        for e in entries
        if not (live_only and e.status == ManifestEntryStatus.DELETED)
    ]


@dataclass(frozen=True)
class StoredFile:
    """A file found on storage: `path` normalized (see `normalize`), `uri` for FileIO."""

    path: str
    uri: str
    size: int
    modified: datetime


def list_files(io: FileIO, location: str) -> Iterator[StoredFile]:
    """Every file under `location`, through the pyarrow filesystem of the table's FileIO."""
    scheme, _, _ = PyArrowFileIO.parse_location(location)
    filesystem, root = _filesystem(io, location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        return
    for info in infos:
        if info.type == pafs.FileType.File:
            modified = info.mtime or datetime.fromtimestamp(0, tz=UTC)
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            uri = info.path if scheme == "file" else f"{scheme}://{info.path}"
            yield StoredFile(path=normalize(uri), uri=uri, size=info.size or 0, modified=modified)


def _filesystem(io: FileIO, location: str) -> tuple[pafs.FileSystem, str]:
    scheme, netloc, path = PyArrowFileIO.parse_location(location)
    if isinstance(io, PyArrowFileIO):
        return io.fs_by_scheme(scheme, netloc), path
    filesystem, path = pafs.FileSystem.from_uri(location)
    return filesystem, path


def delete_all(io: FileIO, paths: Iterable[str]) -> list[str]:
    """Delete every path through the table's FileIO; returns those that failed."""
    failed: list[str] = []

    def delete(path: str) -> None:
        try:
            io.delete(path)
        except FileNotFoundError:
            pass
        except OSError:
            failed.append(path)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(delete, sorted(paths)))
    return failed
