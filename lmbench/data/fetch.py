"""Downloading corpora for users with internet: ``nltk.download`` or a URL checked by SHA-256.

Files land under the data root (see ``lmbench.data.corpora.data_root``) in the same layout the
loaders read, written through ``lmbench.core.io.write_atomic`` (a temporary file beside the
destination, renamed only after the checksum matches; the umask's permissions).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lmbench.core.errors import LmbenchError, did_you_mean
from lmbench.core.io import write_atomic
from lmbench.data.corpora import CORPORA, data_root


@dataclass(frozen=True)
class RemoteFile:
    url: str
    relative_path: str  # under <data root>/data/
    sha256: str


# The checksums are those of the copies the project is tested against (../shared).
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "tinyshakespeare": (
        RemoteFile(
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
            "input.txt",
            "tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        ),
    ),
    "wikitext2": tuple(
        RemoteFile(
            "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
            f"wikitext-2/{split}.txt",
            f"wikitext-2/{split}.txt",
            sha,
        )
        for split, sha in (
            ("valid", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
            ("test", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
        )
    ),
}
NLTK_PACKAGES = {"brown": "brown", "treebank": "treebank", "state_union": "state_union",
                 "inaugural": "inaugural", "webtext": "webtext"}


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Download corpus ``name`` into the data root; return the root. Existing files are kept."""
    root = data_root(data_dir)
    if name in NLTK_PACKAGES:
        import nltk

        target = root / "nltk_data"
        target.mkdir(parents=True, exist_ok=True)
        if not nltk.download(NLTK_PACKAGES[name], download_dir=str(target), quiet=True):
            raise LmbenchError(f"nltk.download({NLTK_PACKAGES[name]!r}) failed; check the network")
        return root
    if name not in REMOTE_FILES:
        known = set(NLTK_PACKAGES) | set(REMOTE_FILES)
        suffix = did_you_mean(name, known) if name not in CORPORA else ""
        raise LmbenchError(f"no download is known for corpus {name!r}{suffix}")
    for remote in REMOTE_FILES[name]:
        destination = root / "data" / remote.relative_path
        if destination.is_file() and sha256_of(destination) == remote.sha256:
            continue
        download_checked(remote.url, destination, remote.sha256)
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_checked(url: str, destination: Path, sha256: str) -> None:
    """Download ``url`` to ``destination`` atomically (``lmbench.core.io.write_atomic``: the
    umask's permissions, no partial file under the real name), refusing content with another
    SHA-256."""

    def write(out) -> None:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise LmbenchError(
                f"{url}: SHA-256 {digest.hexdigest()} does not match the expected {sha256}"
            )

    try:
        write_atomic(destination, write)
    except OSError as error:
        raise LmbenchError(f"{url}: download failed ({error})") from None
