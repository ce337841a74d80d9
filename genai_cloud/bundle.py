"""The source bundle every backend runs: ``job_templates/`` + ``spec.json`` + ``requirements.txt``.

Deterministic: the same inputs give the same bytes (sorted members, fixed mtimes/owners/modes, a
gzip header without a timestamp), so the content hash in the file name is a cache key for uploads
and part of the idempotency key of a job.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import GenaiCloudError

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "job_templates"
# A tiny launcher at the bundle root: SageMaker's toolkit runs `python <sagemaker_program>`, which
# cannot be a module inside a package; this file imports the package's entrypoint instead.
LAUNCHER = "run_job.py"
_LAUNCHER_SOURCE = b"""# Runs the genai-cloud entrypoint from a bundle root (what SageMaker's toolkit executes).
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from job_templates.entrypoint import main

if __name__ == "__main__":
    sys.exit(main())
"""
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        return f"bundle-{self.sha256[:16]}.tar.gz"

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != self.sha256:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(self.data)
            os.replace(tmp, path)
        return path


def _template_files(root: Path) -> list[tuple[str, bytes]]:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        if path.is_file():
            files.append((rel.as_posix(), path.read_bytes()))
    return files


def _tracking_requirements(spec_json: str) -> bytes:
    """The packages ``tracking.backends`` needs, appended to the bundle's requirements.txt."""
    from job_templates.common.tracking import requirements

    needed = requirements(json.loads(spec_json).get("tracking"))
    if not needed:
        return b""
    return "".join(f"{line}\n" for line in ["# tracking.backends", *needed]).encode()


def build_bundle(spec_json: str, templates_dir: Path = TEMPLATES_DIR) -> Bundle:
    """Build the bundle for a spec (already canonical JSON)."""
    requirements = (templates_dir / "requirements.txt").read_bytes()
    requirements += _tracking_requirements(spec_json)
    members = _template_files(templates_dir) + [
        ("spec.json", spec_json.encode()),
        ("requirements.txt", requirements),
        (LAUNCHER, _LAUNCHER_SOURCE),
    ]
    members.sort()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    # mtime=0 and no file name in the gzip header keep the compressed bytes reproducible.
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    return Bundle(data=data, sha256=hashlib.sha256(data).hexdigest())


class UnsafeBundleError(GenaiCloudError):
    headline = "Unsafe archive"


def safe_extract(archive: str | Path | bytes, dest: str | Path) -> Path:
    """Extract a bundle, refusing absolute paths, ``..``, devices and links that escape ``dest``."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")
    with fileobj, tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, dest)
        for member in members:
            target = dest / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.issym():
                target.symlink_to(member.linkname)
                continue
            source = tar.extractfile(member)
            assert source is not None  # regular file, checked above
            target.write_bytes(source.read())
            target.chmod(0o644)
    return dest


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise UnsafeBundleError(f"refusing member {member.name!r}: absolute or '..' path")
    if not (member.isfile() or member.isdir() or member.issym()):
        raise UnsafeBundleError(f"refusing member {member.name!r}: not a file, folder or symlink")
    if (dest / member.name).resolve() != dest and not _inside(dest / member.name, dest):
        raise UnsafeBundleError(f"refusing member {member.name!r}: escapes the destination")
    if member.issym():
        link = PurePosixPath(member.linkname)
        target = (dest / name.parent / link).resolve()
        if link.is_absolute() or not _inside(target, dest):
            raise UnsafeBundleError(
                f"refusing link {member.name!r} -> {member.linkname!r}: points outside the bundle"
            )


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False
