"""``genai-cloud package lambda``: the AWS Lambda deployment zip of the launcher.

What goes in: ``genai_cloud/`` and ``job_templates/`` (the handler builds each job's bundle from
it), plus the launcher's third-party dependencies, pydantic (with pydantic_core, a compiled
extension) and PyYAML, with their own dependencies. What stays out: boto3/botocore (the Lambda
runtime provides them), click (only the CLI uses it), and everything the training job needs
(torch, transformers, ...: the job's container installs those from ``requirements.txt``).

Where the compiled dependencies come from, honestly, in this order:

1. ``site_dir``: a folder you filled with ``pip install --target DIR --platform
   manylinux2014_x86_64 --python-version 3.13 --only-binary=:all: pydantic pyyaml``;
2. this interpreter's site-packages, when it *is* the runtime's Python (same minor version,
   Linux x86_64) and every wheel's tags fit the runtime's glibc (checked, else refused);
3. otherwise ``pip install --target`` of Linux x86_64 wheels for the runtime's Python, pinned to
   the versions installed here (needs PyPI).

The zip is reproducible (sorted entries, fixed timestamps) and carries bytecode compiled by the
runtime's Python when one is on PATH: Lambda's ``/var/task`` is read-only, so without it every
cold start recompiles every module it imports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from ..errors import GenaiCloudError

# Lambda runtime -> (Python version, glibc of its OS). python3.11 runs on Amazon Linux 2
# (glibc 2.26, creation blocked since 2026-07-31); python3.12+ on Amazon Linux 2023 (2.34).
RUNTIMES = {
    "python3.11": ((3, 11), (2, 26)),
    "python3.12": ((3, 12), (2, 34)),
    "python3.13": ((3, 13), (2, 34)),
}
DEFAULT_RUNTIME = "python3.13"  # infra/aws/template.yaml uses the same
ARCHITECTURE = "x86_64"
REQUIREMENTS = ("pydantic", "PyYAML")
# Never vendored: the runtime has the AWS SDK; pip-only tools are dead weight.
EXCLUDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "dateutil",
            "six", "pip", "setuptools", "wheel"}  # fmt: skip
# Vendored files the launcher never imports, left out to stay well inside the 5 MB target.
PRUNED = (
    "pydantic/v1/",  # the pydantic 1 API; v2 imports it only for v1-style models
    "pydantic/mypy.py",  # the mypy plugin
    "yaml/_yaml.",  # libyaml binding: specs are read with the pure-Python SafeLoader
    "_yaml/",
)
SOURCE_PACKAGES = ("genai_cloud", "job_templates")
_SKIP_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", "tests"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say; fixed for reproducible bytes


class PackagingError(GenaiCloudError):
    headline = "Cannot build the Lambda package"


def build_lambda_zip(
    dest: str | Path,
    *,
    runtime: str = DEFAULT_RUNTIME,
    site_dir: str | Path | None = None,
    compile_bytecode: bool = True,
    python: str | None = None,
) -> Path:
    """Write the deployment zip and return its path.

    Args:
        dest: the zip file to write, or a folder (the zip is then ``genai-cloud-lambda.zip``).
        runtime: the Lambda runtime the zip is for (``python3.11`` ... ``python3.13``).
        site_dir: a ``pip install --target`` folder with the dependencies built for
            ``runtime`` on Linux x86_64 (see the module docstring for the default).
        compile_bytecode: add ``.pyc`` files made by the runtime's Python, if one is found.
        python: that interpreter (default: this one if it matches, else ``python3.X`` on PATH).

    Raises:
        PackagingError: unknown runtime, a dependency missing or built for another platform.
    """
    if runtime not in RUNTIMES:
        raise PackagingError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    version, glibc = RUNTIMES[runtime]
    dest = Path(dest)
    if dest.is_dir() or not dest.suffix:
        dest = dest / "genai-cloud-lambda.zip"
    files: dict[str, bytes] = {}
    root = Path(__file__).resolve().parents[2]
    for package in SOURCE_PACKAGES:
        _add_tree(files, root / package, root)
    if site_dir is not None:
        _add_site_dir(files, Path(site_dir))
    elif sys.platform == "linux" and sys.version_info[:2] == version:
        for name in _closure(REQUIREMENTS, version):
            _add_distribution(files, name, version, glibc)
    else:
        with tempfile.TemporaryDirectory() as target:
            _pip_install_for(target, version, glibc)
            _add_site_dir(files, Path(target))
    for name in [n for n in files if n.startswith(PRUNED)]:
        del files[name]
    python = (python or _python_for(version)) if compile_bytecode else None
    if python:
        _add_bytecode(files, python)
    elif compile_bytecode:
        import logging

        py = f"{version[0]}.{version[1]}"
        logging.getLogger("genai_cloud").warning(
            "no Python %s on PATH (python%s), so the zip has no bytecode: each cold start "
            "compiles what it imports. Put python%s on PATH for a faster cold start.", py, py, py)
    return _write_zip(dest, files)


def _pip_install_for(target: str, version: tuple[int, int], glibc: tuple[int, int]) -> None:
    pins = []
    for name in REQUIREMENTS:  # the versions the tests ran with, when installed here
        try:
            pins.append(f"{name}=={distribution(name).version}")
        except PackageNotFoundError:
            pins.append(name)
    platforms = [f"manylinux_{glibc[0]}_{glibc[1]}_{ARCHITECTURE}", f"manylinux2014_{ARCHITECTURE}"]
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", target, "--only-binary=:all:", "--implementation", "cp",
           "--python-version", f"{version[0]}.{version[1]}", "--no-compile"]  # fmt: skip
    for platform in platforms:
        cmd += ["--platform", platform]
    done = subprocess.run(cmd + pins, capture_output=True, text=True, check=False)
    if done.returncode:
        py = f"{version[0]}.{version[1]}"
        raise PackagingError(
            f"pip could not fetch Linux wheels for Python {py}: {done.stderr.strip()[-400:]}\n"
            f"Either run `genai-cloud package lambda` under Python {py} on Linux {ARCHITECTURE} "
            "(it then packs its own site-packages, nothing is downloaded), or give pip the "
            "wheels: where PyPI is reachable, `pip download --dest WHEELS --only-binary=:all: "
            f"--platform manylinux2014_{ARCHITECTURE} --python-version {py} {' '.join(pins)}`, "
            "then here `PIP_NO_INDEX=1 PIP_FIND_LINKS=WHEELS genai-cloud package lambda` (or set "
            f"PIP_INDEX_URL to a mirror). {_API_HINT}"
        )


# What a Python caller can do besides (the CLI has no option for it).
_API_HINT = ("From Python: build_lambda_zip(dest, site_dir=DIR) packs a folder you filled with "
             "`pip install --target DIR`.")  # fmt: skip


def _python_for(version: tuple[int, int]) -> str | None:
    """An interpreter of the runtime's version (for bytecode), or None."""
    if sys.version_info[:2] == version:
        return sys.executable
    candidate = shutil.which(f"python{version[0]}.{version[1]}")
    if not candidate:
        return None
    probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return candidate if probe.stdout.strip() == str(version) else None


# Entry files the Cloud Functions / Azure Functions runtimes look for at the package root. Their
# runtimes pip-install requirements.txt on deploy, so these packages carry source only.
_FUNCTION_ENTRY = {
    "gcp": (
        "main.py",
        (
            "from genai_cloud.serverless.gcp_function import launch_gcs, launch_http\n"
            '\n__all__ = ["launch_gcs", "launch_http"]\n'
        ),
    ),
    "azure": (
        "function_app.py",
        'from genai_cloud.serverless.azure_function import app\n\n__all__ = ["app"]\n',
    ),
}
_FUNCTION_REQUIREMENTS = {
    "gcp": "pydantic>=2.6,<3\npyyaml>=6\nfunctions-framework>=3.5\n"
    "google-cloud-aiplatform>=1.60\ngoogle-cloud-storage>=2.14\n",
    "azure": "pydantic>=2.6,<3\npyyaml>=6\nazure-functions>=1.18\nazure-ai-ml>=1.15\n"
    "azure-identity>=1.15\n",
}
_AZURE_HOST_JSON = (
    '{"version": "2.0", "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", '
    '"version": "[4.*, 5.0.0)"}}\n'
)


def build_function_zip(dest: str | Path, platform: str) -> Path:
    """The source package of the Cloud Function (``gcp``) or Function App (``azure``).

    Source only (``genai_cloud/``, ``job_templates/``, the entry file and ``requirements.txt``,
    plus ``host.json`` for Azure): both platforms install the requirements when deploying.
    """
    if platform not in _FUNCTION_ENTRY:
        raise PackagingError(f"unknown platform {platform!r}; valid: {', '.join(_FUNCTION_ENTRY)}")
    dest = Path(dest)
    if dest.is_dir() or not dest.suffix:
        dest = dest / f"genai-cloud-{platform}-function.zip"
    files: dict[str, bytes] = {}
    root = Path(__file__).resolve().parents[2]
    for package in SOURCE_PACKAGES:
        _add_tree(files, root / package, root)
    entry, source = _FUNCTION_ENTRY[platform]
    files[entry] = source.encode()
    files["requirements.txt"] = _FUNCTION_REQUIREMENTS[platform].encode()
    if platform == "azure":
        files["host.json"] = _AZURE_HOST_JSON.encode()
    return _write_zip(dest, files)


def _write_zip(dest: Path, files: dict[str, bytes]) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    tmp.replace(dest)
    return dest


def _add_tree(files: dict[str, bytes], folder: Path, root: Path) -> None:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not _SKIP_PARTS & set(rel.parts) and path.suffix != ".pyc":
            files[rel.as_posix()] = path.read_bytes()


def _closure(requirements: tuple[str, ...], version: tuple[int, int]) -> list[str]:
    """The requirements and their runtime dependencies (extras and markers evaluated)."""
    excluded = {_canonical(e) for e in EXCLUDED}
    seen: dict[str, None] = {}
    todo = list(requirements)
    while todo:
        name = todo.pop()
        key = _canonical(name)
        if key in seen or key in excluded:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise PackagingError(f"{name} is not installed here: `{sys.executable} -m pip "
                                 f"install {name}`, then run `genai-cloud package lambda` again. "
                                 f"{_API_HINT}") from None  # fmt: skip
        seen[key] = None
        todo.extend(_runtime_requirements(dist.requires or [], version))
    return list(seen)


def _runtime_requirements(requires: list[str], version: tuple[int, int]) -> list[str]:
    names = []
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        if marker and not _marker_holds(marker, version):
            continue
        names.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return names


def _marker_holds(marker: str, version: tuple[int, int]) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # no packaging: keep only markers that do not ask for an extra
        return "extra" not in marker
    # Evaluated for the Lambda runtime, not for this machine.
    py = f"{version[0]}.{version[1]}"
    env = {"python_version": py, "python_full_version": f"{py}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": ARCHITECTURE, "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "extra": ""}  # fmt: skip
    return Marker(marker).evaluate(env)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _add_distribution(
    files: dict[str, bytes], name: str, version: tuple[int, int], glibc: tuple[int, int]
) -> None:
    dist = distribution(name)
    _check_wheel_tags(name, dist.read_text("WHEEL") or "", version, glibc)
    for entry in dist.files or []:
        rel = entry.as_posix()
        # "../../bin/x" console scripts live outside site-packages; caches are rebuilt.
        if rel.startswith("..") or "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        path = Path(dist.locate_file(entry))
        if path.is_file():
            files[rel] = path.read_bytes()


def _check_wheel_tags(
    name: str, wheel: str, version: tuple[int, int], glibc: tuple[int, int]
) -> None:
    tags = re.findall(r"^Tag:\s*(\S+)", wheel, flags=re.MULTILINE)
    if not tags or any(tag_fits(t, version, glibc) for t in tags):
        return
    py = f"{version[0]}.{version[1]}"
    raise PackagingError(
        f"{name} is installed as a {', '.join(tags)} wheel; the Lambda python{py} "
        f"{ARCHITECTURE} runtime needs cp{version[0]}{version[1]} manylinux (glibc <= "
        f"{glibc[0]}.{glibc[1]}) or pure-Python wheels. Run `genai-cloud package lambda` on "
        f"Linux {ARCHITECTURE} with glibc (e.g. in the python:{py} container image), or from "
        f"Python with a folder filled by `pip install --target DIR --platform "
        f"manylinux2014_{ARCHITECTURE} --python-version {py} --only-binary=:all: pydantic "
        "pyyaml`: build_lambda_zip(dest, site_dir=DIR)."
    )


def tag_fits(tag: str, version: tuple[int, int], glibc: tuple[int, int]) -> bool:
    """Whether a wheel tag (``cp313-cp313-manylinux_2_17_x86_64``) runs on the runtime."""
    python, abi, platform = tag.split("-")
    cp = f"cp{version[0]}{version[1]}"
    if platform == "any":
        return python.startswith("py3") or python == cp
    if python != cp or abi not in (cp, "abi3", "none"):
        return False
    legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
    match = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014|manylinux_(\d+)_(\d+))_(\w+)",
                         platform)  # fmt: skip
    if not match or match.group(4) != ARCHITECTURE:
        return False
    needs = legacy.get(match.group(1)) or (int(match.group(2)), int(match.group(3)))
    return needs <= glibc


def _add_site_dir(files: dict[str, bytes], site: Path) -> None:
    if not site.is_dir():
        raise PackagingError(f"site_dir {site} is not a folder")
    excluded = {_canonical(e) for e in EXCLUDED}
    for path in sorted(site.rglob("*")):
        rel = path.relative_to(site)
        top = _canonical(rel.parts[0].split("-")[0].removesuffix(".py"))
        if not path.is_file() or top in excluded or rel.parts[0] == "bin":
            continue
        if "__pycache__" not in rel.parts and path.suffix != ".pyc":
            files[rel.as_posix()] = path.read_bytes()
    if not any(name.startswith("pydantic_core/") for name in files):
        raise PackagingError(f"site_dir {site} has no pydantic_core; install pydantic into it")


def _add_bytecode(files: dict[str, bytes], python: str) -> None:
    """Compile every ``.py`` with the runtime's interpreter into ``__pycache__``.

    ``unchecked-hash`` pycs stay valid whatever mtimes the unzipped files get.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            if name.endswith(".py"):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
        # A file that does not compile (e.g. vendored for another Python) ships as source only.
        subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "-s", tmp,
                        "--invalidation-mode", "unchecked-hash", tmp],
                       capture_output=True, check=False)  # fmt: skip
        for pyc in root.rglob("__pycache__/*.pyc"):
            files[pyc.relative_to(root).as_posix()] = pyc.read_bytes()


def zip_listing(path: str | Path) -> list[str]:
    """The member names of a built zip (for checks and the benchmark)."""
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()
