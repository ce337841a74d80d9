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


def _chained_links(tar):
    # Each link checked alone, before any exists, stays inside: d -> . is the root, d/e -> ..
    # is d's parent (the root, lexically). Once d exists, d/e lands in the root and .. leaves it.
    _link(tar, "d", ".")
    _link(tar, "d/e", "..")
    _file(tar, "d/e/x", b"escaped")


@pytest.mark.parametrize("make", [
    _chained_links,
    lambda t: (_file(t, "a/real.txt", b"hi"), _link(t, "a/alias", "real.txt")),
    lambda t: (_file(t, "a/real.txt", b"hi"), _link(t, "a/hard", "a/real.txt", tarfile.LNKTYPE)),
], ids=["chained", "inner-symlink", "inner-hardlink"])  # fmt: skip
def test_every_link_is_refused_and_nothing_is_written(tmp_path, make):
    dest = tmp_path / "root" / "dest"
    with pytest.raises(UnsafeBundleError, match="refusing link"):
        safe_extract(_archive(make), dest)
    assert not (tmp_path / "root" / "x").exists() and not (tmp_path / "x").exists()
    assert not any(dest.rglob("*"))


@pytest.mark.parametrize("where", ["folder", "file"])
def test_a_symlink_already_in_the_destination_is_not_followed(tmp_path, where):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    if where == "folder":
        (dest / "sub").symlink_to(outside)
        data = _archive(lambda t: _file(t, "sub/x.txt", b"escaped"))
    else:
        (dest / "x.txt").symlink_to(outside / "x.txt")
        data = _archive(lambda t: _file(t, "x.txt", b"escaped"))
    with pytest.raises(UnsafeBundleError, match="is a symlink"):
        safe_extract(data, dest)
    assert not (outside / "x.txt").exists()


def test_a_file_and_a_folder_of_one_name_is_an_unsafe_bundle_error(tmp_path):
    data = _archive(lambda t: (_file(t, "a", b"file"), _file(t, "a/b", b"under a file")))
    with pytest.raises(UnsafeBundleError, match="cannot extract member 'a/b'"):
        safe_extract(data, tmp_path / "d")


def test_files_and_folders_extract_with_their_content(tmp_path):
    def add(tar):
        info = tarfile.TarInfo("empty")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        _file(tar, "./a/b/c.txt", b"deep")
        _file(tar, "top.txt", b"x" * 3_000_000)

    root = safe_extract(_archive(add), tmp_path / "d")
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"deep"
    assert (root / "top.txt").stat().st_size == 3_000_000
    assert (root / "empty").is_dir()
