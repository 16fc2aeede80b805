"""Fetching: a download is kept only when its SHA-256 matches, and lands atomically."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from lmbench.core.errors import LmbenchError
from lmbench.data.fetch import REMOTE_FILES, download_checked, fetch


def test_download_checks_the_sha256(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("to be or not to be\n")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "data" / "copy.txt"
    download_checked(source.as_uri(), target, digest)
    assert target.read_text() == "to be or not to be\n"
    with pytest.raises(LmbenchError, match="does not match the expected"):
        download_checked(source.as_uri(), tmp_path / "data" / "bad.txt", "0" * 64)
    assert not (tmp_path / "data" / "bad.txt").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["copy.txt"]  # no .part left


def test_a_download_keeps_the_umask_permissions(tmp_path):
    """Through lmbench.core.io.write_atomic, not a private mkstemp file (0600)."""
    source = tmp_path / "remote.txt"
    source.write_bytes(b"corpus text\n")
    target = tmp_path / "data" / "corpus.txt"
    download_checked(source.as_uri(), target, hashlib.sha256(b"corpus text\n").hexdigest())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    if not umask & 0o044:  # the usual 022: readable by group and others, as other files are
        assert target.stat().st_mode & 0o044 == 0o044


def test_known_files_are_pinned_to_the_shared_copies(data_dir):
    for remotes in REMOTE_FILES.values():
        for remote in remotes:
            local = data_dir / "data" / remote.relative_path
            assert hashlib.sha256(local.read_bytes()).hexdigest() == remote.sha256


def test_fetch_skips_files_already_present_and_refuses_unknown_names(data_dir):
    assert fetch("tinyshakespeare", data_dir) == data_dir  # present with the right checksum
    with pytest.raises(LmbenchError, match="no download is known for corpus 'shakespeare'"):
        fetch("shakespeare", data_dir)
