"""Cache location, URL policy, verified downloads.

Downloads go through pooch: it streams into a temporary file inside the
cache folder, checks the hash and only then moves the file to its final
name, so an unverified file never sits under a name that is later trusted.
Cached files are re-hashed on every use, before h5py opens them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import DownloadError, IntegrityError, ManifestError, OfflineError
from ._manifest import WeightsFile

TIMEOUT_SECONDS = 30  # per request; pooch's default would wait forever-ish
_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Folder that holds weight files: keras' own cache by default.

    `RESNET_KERAS_HOME` if set, else `$KERAS_HOME/models`, else
    `~/.keras/models`, so files keras.applications downloaded are reused.
    """
    if os.environ.get("RESNET_KERAS_HOME"):
        return Path(os.environ["RESNET_KERAS_HOME"]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "models"


def offline_from_env() -> bool:
    return os.environ.get("RESNET_KERAS_OFFLINE", "").strip().lower() in _TRUE


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url, where: str = "url") -> str:
    """https anywhere; http only to a loopback host; file:// for local mirrors."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    ok = parts is not None and not parts.username and not parts.password and (
        (parts.scheme == "https" and parts.hostname)
        or (parts.scheme == "http" and _is_loopback(parts.hostname or ""))
        or (parts.scheme == "file" and parts.path)
    )
    if not ok:
        raise ManifestError(
            f"{where} must be an https:// URL without credentials (http:// "
            f"only to 127.0.0.1, ::1 or localhost; file:// for local mirrors)."
            f" Received: {url!r}"
        )
    return url


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one."""
    return path.is_file() and file_digest(path, wfile.hash_algorithm) == wfile.hash_hex


def _copy_local(url: str, output_file: str, _pooch) -> None:
    """pooch downloader for file:// URLs (pooch itself has none)."""
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    shutil.copyfile(source, output_file)


def _downloader(url: str, progressbar: bool):
    import pooch

    if url.startswith("file:"):
        return _copy_local
    return pooch.HTTPDownloader(progressbar=progressbar, timeout=TIMEOUT_SECONDS)


def fetch(
    wfile: WeightsFile,
    *,
    offline: bool | None = None,
    progressbar: bool = True,
) -> Path:
    """Path of the verified local copy of `wfile`, downloading it if needed."""
    import pooch
    import requests

    folder = cache_dir()
    path = folder / wfile.file_name
    if is_verified(path, wfile):
        return path
    state = "is corrupt" if path.exists() else "is not in the cache"
    if offline is None:
        offline = offline_from_env()
    if offline:
        raise OfflineError(
            f"Offline mode is on and {wfile.file_name} {state} ({folder}). "
            f"Download {wfile.urls[0]} and put it at {path} (expected "
            f"{wfile.hash}), or turn offline mode off."
        )
    failures = []
    for url in wfile.urls:
        try:
            pooch.retrieve(
                url,
                known_hash=wfile.hash,
                fname=wfile.file_name,
                path=folder,
                downloader=_downloader(url, progressbar),
            )
        except ValueError as error:  # pooch: hash mismatch
            failures.append(f"{url}: {error}")
        except (requests.RequestException, OSError) as error:
            failures.append(f"{url}: {type(error).__name__}: {error}")
        else:
            if is_verified(path, wfile):
                return path
            failures.append(f"{url}: file changed after verification")
    detail = "; ".join(failures)
    error_type = IntegrityError if "hash" in detail.lower() else DownloadError
    raise error_type(
        f"Could not get a verified {wfile.file_name} (expected {wfile.hash}) "
        f"into {folder}. Tried: {detail}. Check the network or the mirror, "
        f"or put the file there by hand."
    )

