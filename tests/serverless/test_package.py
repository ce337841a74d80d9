"""`genai-cloud package lambda`: what goes into the zip, and that it imports without site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from genai_cloud.serverless import package

RUNTIME = f"python{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory):
    if RUNTIME not in package.RUNTIMES or sys.platform != "linux":
        pytest.skip(f"building from site-packages needs a Lambda Python on Linux, not {RUNTIME}")
    return package.build_lambda_zip(tmp_path_factory.mktemp("pkg"), runtime=RUNTIME)


def test_zip_holds_the_launcher_and_its_deps_but_not_boto3(lambda_zip):
    names = package.zip_listing(lambda_zip)
    tops = {n.split("/")[0] for n in names}
    assert {"genai_cloud", "job_templates", "pydantic", "pydantic_core", "yaml"} <= tops
    assert "job_templates/entrypoint.py" in names  # bundles are built from it
    assert not tops & {"boto3", "botocore", "click", "torch", "transformers"}
    assert not any(n.startswith("pydantic/v1/") for n in names)
    assert any(
        n.endswith(f".cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc") for n in names
    )
    assert lambda_zip.stat().st_size <= 5_000_000  # issue 8 target


def test_zip_imports_in_a_bare_interpreter(lambda_zip, tmp_path):
    with zipfile.ZipFile(lambda_zip) as archive:
        archive.extractall(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import genai_cloud.serverless.aws_lambda as h; h.core.warm_up();"
            "from genai_cloud.spec import JobSpec; import pydantic;"
            "assert pydantic.__file__.startswith(sys.argv[1]), pydantic.__file__;"
            "print(sorted(m for m in ('torch', 'transformers', 'boto3') if m in sys.modules))")  # fmt: skip
    # -I -S: no site-packages, as in /var/task (boto3 is the runtime's; not needed to import).
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code, str(tmp_path)],
                          check=False, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_zip_is_reproducible(tmp_path):
    if RUNTIME not in package.RUNTIMES:
        pytest.skip("needs a Lambda Python")
    one = package.build_lambda_zip(tmp_path / "a.zip", runtime=RUNTIME, compile_bytecode=False)
    two = package.build_lambda_zip(tmp_path / "b.zip", runtime=RUNTIME, compile_bytecode=False)
    assert one.read_bytes() == two.read_bytes()


@pytest.mark.parametrize(
    ("tag", "runtime", "fits"),
    [
        ("py3-none-any", "python3.13", True),
        ("cp313-cp313-manylinux_2_17_x86_64", "python3.13", True),
        ("cp313-cp313-manylinux_2_34_x86_64", "python3.13", True),
        ("cp311-cp311-manylinux_2_28_x86_64", "python3.11", False),  # Amazon Linux 2: glibc 2.26
        ("cp311-cp311-manylinux2014_x86_64", "python3.11", True),
        ("cp311-cp311-manylinux_2_17_x86_64", "python3.13", False),  # wrong Python
        ("cp313-cp313-manylinux_2_17_aarch64", "python3.13", False),
        ("cp313-cp313-macosx_11_0_arm64", "python3.13", False),
        ("cp313-abi3-manylinux_2_17_x86_64", "python3.13", True),
    ],
)
def test_wheel_tags_are_checked_against_the_runtime(tag, runtime, fits):
    version, glibc = package.RUNTIMES[runtime]
    assert package.tag_fits(tag, version, glibc) is fits


def test_foreign_wheel_is_refused_with_the_fix():
    with pytest.raises(package.PackagingError, match="site_dir=DIR") as info:
        package._check_wheel_tags("pydantic_core", "Tag: cp311-cp311-macosx_11_0_arm64\n",
                                  (3, 11), (2, 26))  # fmt: skip
    assert "Run `genai-cloud package lambda` on Linux x86_64" in info.value.message
    with pytest.raises(package.PackagingError, match="unknown runtime"):
        package.build_lambda_zip("x.zip", runtime="python2.7")


def test_function_source_zips(tmp_path):
    gcp = package.zip_listing(package.build_function_zip(tmp_path, "gcp"))
    azure = package.zip_listing(package.build_function_zip(tmp_path, "azure"))
    assert {"main.py", "requirements.txt", "genai_cloud/serverless/gcp_function.py"} <= set(gcp)
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(azure)
    with pytest.raises(package.PackagingError, match="valid: gcp, azure"):
        package.build_function_zip(tmp_path, "aws")


def test_a_failed_wheel_download_says_what_to_do_from_the_cli(tmp_path, monkeypatch, capsys):
    """The fixes named are ones the `genai-cloud package` command can take (it has no option
    for a dependency folder): the runtime's Python, or pip's own settings for where wheels are."""
    from types import SimpleNamespace

    from genai_cloud.cli import main

    runtime = package.DEFAULT_RUNTIME  # what the command builds for
    if package.RUNTIMES[runtime][0] == sys.version_info[:2] and sys.platform == "linux":
        pytest.skip("this Python is the runtime's: its own site-packages are packed, no pip")
    seen = []

    def pip(cmd, **kwargs):
        seen.append(cmd)
        return SimpleNamespace(returncode=1, stdout="", stderr="ERROR: No matching distribution")

    monkeypatch.setattr(package.subprocess, "run", pip)
    monkeypatch.setattr(package, "_python_for", lambda version: None)
    with pytest.raises(SystemExit) as info:
        main(["package", "lambda", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Error: Cannot build the Lambda package" in err
    py = runtime.removeprefix("python")
    assert f"run `genai-cloud package lambda` under Python {py} on Linux x86_64" in err
    pins = [a for a in seen[0] if "==" in a]  # what pip was asked for, pinned
    assert pins and f"--python-version {py} {' '.join(pins)}`" in err
    assert "PIP_NO_INDEX=1 PIP_FIND_LINKS=WHEELS genai-cloud package lambda" in err
    assert "pass it as site_dir" not in err and "build_lambda_zip(dest, site_dir=DIR)" in err


def test_a_missing_dependency_names_the_pip_command():
    with pytest.raises(package.PackagingError) as info:
        package._closure(("surely-not-installed-pkg",), sys.version_info[:2])
    assert f"{sys.executable} -m pip install surely-not-installed-pkg" in info.value.message
    assert "genai-cloud package lambda" in info.value.message
