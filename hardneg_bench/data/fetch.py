"""Finding a real dataset's files under the data root, downloading them when allowed."""

from __future__ import annotations

import socket
from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive

from .base import DatasetMissingError

DOWNLOAD_TIMEOUT_S = 30


def require_files(name: str, folder: Path, files: list[str], url: str, archive: str, md5: str, root: Path, download: bool) -> None:
    """Make sure every file of ``files`` is in ``folder``: download and extract ``url`` into
    ``root`` if some are missing and ``download`` is set; otherwise (or if that fails) raise a
    one-line :class:`DatasetMissingError` saying what is missing, where, and how to get it."""
    missing = [f for f in files if not (folder / f).is_file()]
    if not missing:
        return
    reason = f"{name} not found: {folder / missing[0]} is missing"
    if download:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            download_and_extract_archive(url, str(root), filename=archive, md5=md5)
        except Exception as err:  # offline, refused, corrupt archive: all end in the same advice
            reason += f" and the download failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"
        finally:
            socket.setdefaulttimeout(previous)
        missing = [f for f in files if not (folder / f).is_file()]
        if not missing:
            return
    raise DatasetMissingError(f"{reason}; download {url} and extract it into {root} (or pass --data-root to the folder holding {folder.name}/)")
