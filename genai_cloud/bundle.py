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


def _tracking_requirements(spec_json: str) -> str:
    """The packages ``tracking.backends`` needs, appended to the bundle's requirements.txt."""
    from job_templates.common.tracking import requirements

    needed = requirements(json.loads(spec_json).get("tracking"))
    if not needed:
        return ""
    return "".join(f"{line}\n" for line in ["# tracking.backends", *needed])


def build_bundle(spec_json: str, templates_dir: Path = TEMPLATES_DIR,
                 requirements: str | None = None) -> Bundle:  # fmt: skip
    """Build the bundle for a spec (already canonical JSON).

    ``requirements``: the bundle's ``requirements.txt``, what the container pip-installs (the
    runtime's pinned lock, ``genai_cloud.runtimes``); default the unpinned
    ``job_templates/requirements.txt`` (local runs install nothing). The packages the spec's
    ``tracking`` backends need are added to either."""
    if requirements is None:
        requirements = (templates_dir / "requirements.txt").read_text()
    requirements_bytes = (requirements + _tracking_requirements(spec_json)).encode()
    members = _template_files(templates_dir) + [
        ("spec.json", spec_json.encode()),
        ("requirements.txt", requirements_bytes),
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
    """Extract a bundle into ``dest``: regular files and folders only.

    Refused, before anything is written: absolute paths, ``..``, devices, FIFOs and every link
    (symbolic or hard). A bundle never holds a link (``build_bundle`` writes files only), and a
    link checked before extraction can be made to escape by the members after it (``d -> .``,
    then ``d/e -> ..``, then ``d/e/x``); refusing them is the one rule without such a gap.
    While writing, no existing symlink under ``dest`` is followed (one placed there by hand is
    refused too) and files are opened with ``O_NOFOLLOW``.

    Raises:
        UnsafeBundleError: naming the member and why.
    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")
    with fileobj, tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        for member in members:
            try:
                _extract_member(tar, member, dest)
            except OSError as exc:  # e.g. a file and a folder of the same name
                raise UnsafeBundleError(f"cannot extract member {member.name!r}: "
                                        f"{exc.strerror or exc}") from None  # fmt: skip
    return dest


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise UnsafeBundleError(f"refusing member {member.name!r}: absolute or '..' path")
    if "\x00" in member.name or not name.parts:
        raise UnsafeBundleError(f"refusing member {member.name!r}: not a file name")
    if member.issym() or member.islnk():
        raise UnsafeBundleError(f"refusing link {member.name!r} -> {member.linkname!r}: a bundle "
                                "holds files and folders only")  # fmt: skip
    if not (member.isfile() or member.isdir()):
        raise UnsafeBundleError(f"refusing member {member.name!r}: not a file or folder")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    parts = PurePosixPath(member.name).parts
    folders = parts if member.isdir() else parts[:-1]
    here = dest
    for part in folders:  # one component at a time, never through a symlink
        if part == ".":
            continue
        here = here / part
        if here.is_symlink():
            raise UnsafeBundleError(f"refusing member {member.name!r}: {here} is a symlink")
        here.mkdir(exist_ok=True)
    if member.isdir():
        return
    target = here / parts[-1]
    if target.is_symlink():
        raise UnsafeBundleError(f"refusing member {member.name!r}: {target} is a symlink")
    source = tar.extractfile(member)
    assert source is not None  # a regular file, checked above
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)  # the umask may have narrowed it; an existing file keeps its own
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
