"""Downloads into the data root: a progress bar, and a file that appears only when it is whole."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["download"]


def download(url: str, dest: Path) -> None:
    """``url`` into ``dest`` with a progress bar, through a private temp file (several processes,
    such as torchrun's ranks, may download at once) renamed into place when whole."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with (
            os.fdopen(fd, "wb") as f,
            urllib.request.urlopen(url, timeout=60) as response,  # noqa: S310 (fixed http(s) URL)
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
