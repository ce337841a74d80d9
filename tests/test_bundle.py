"""The bundle: deterministic bytes, the right members, and a tar-slip-proof extractor."""

import io
import tarfile

import pytest

from genai_cloud.bundle import LAUNCHER, UnsafeBundleError, build_bundle, safe_extract


def test_same_inputs_same_bytes():
    a, b = build_bundle('{"name": "x"}'), build_bundle('{"name": "x"}')
    assert a.data == b.data and a.sha256 == b.sha256
    assert a.sha256[:16] in a.name
    assert build_bundle('{"name": "y"}').sha256 != a.sha256


def test_members(tmp_path):
    bundle = build_bundle('{"name": "x"}')
    root = safe_extract(bundle.data, tmp_path)
    assert (root / "spec.json").read_text() == '{"name": "x"}'
    assert (root / "requirements.txt").is_file()
    assert (root / LAUNCHER).is_file()
    assert (root / "job_templates" / "entrypoint.py").is_file()
    assert not list(root.rglob("__pycache__"))


def _archive(add) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        add(tar)
    return raw.getvalue()


def _file(tar, name, content=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def _link(tar, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


@pytest.mark.parametrize("make", [
    lambda t: _file(t, "../evil.txt"),
    lambda t: _file(t, "/etc/evil.txt"),
    lambda t: _file(t, "ok/../../evil.txt"),
    lambda t: _link(t, "link", "/etc/passwd"),
    lambda t: _link(t, "sub/link", "../../outside"),
    lambda t: _link(t, "hard", "/etc/passwd", tarfile.LNKTYPE),
], ids=["dotdot", "absolute", "nested-dotdot", "abs-symlink", "escaping-symlink", "hardlink"])
def test_tar_slip_is_refused(tmp_path, make):
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeBundleError):
        safe_extract(_archive(make), dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not any(dest.rglob("*")) if dest.exists() else True


def test_inner_symlink_is_allowed(tmp_path):
    data = _archive(lambda t: (_file(t, "a/real.txt", b"hi"), _link(t, "a/alias", "real.txt")))
    root = safe_extract(data, tmp_path / "d")
    assert (root / "a" / "alias").read_text() == "hi"
