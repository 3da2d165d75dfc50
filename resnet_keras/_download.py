"""Cache location, URL policy, verified downloads.

A weights file reaches its final name in the cache only once its hash is
verified: pooch's HTTP downloader (requests, timeouts, tqdm progress bar)
streams it into a temp file of our own in the cache folder, the hash is
checked, and `os.replace` moves it into place in one atomic step. Readers
therefore never see a partial file, whether or not file locks work (NFS);
the lock (filelock) only saves a second process from fetching the same
100 MB again. Cached files are re-hashed on every use, before h5py opens
them.

Cache layout, for a file `NAME` of the manifest:
    NAME                       the verified file (keras uses the same name)
    .NAME.<host>-<pid>-<rand>.part   a download in progress (removed when it
                               ends, or by a later run once its process is gone)
    .NAME.lock                 held while one process fetches NAME
    NAME.corrupt               a cached NAME that failed its hash, set aside
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import stat
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from .errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    InvalidArgumentError,
    ManifestError,
    OfflineError,
)
from ._manifest import WeightsFile

# Seconds to wait for a connection and between two bytes of an answer, on
# every request. `RESNET_KERAS_TIMEOUT` overrides it; tests set it low.
TIMEOUT_SECONDS = 30.0
# Extra tries of one URL after a 5xx answer, a dropped connection or a
# timeout; the wait between tries grows by RETRY_WAIT_SECONDS each time.
# Wrong bytes and 4xx answers are not retried: they would not change.
MAX_RETRIES = 2
RETRY_WAIT_SECONDS = 1.0
# How long to wait for another process fetching the same file; after that we
# fetch anyway (the atomic rename keeps the cache correct without the lock).
LOCK_TIMEOUT_SECONDS = 900.0
USE_FILE_LOCK = True
# A temp file whose process is gone (same host), or this old, is from a
# crashed run and is removed by the next fetch of the same file.
STALE_TEMP_SECONDS = 24 * 3600.0
TEMP_SUFFIX = ".part"
CORRUPT_SUFFIX = ".corrupt"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def cache_dir() -> Path:
    """Folder that holds weight files: keras' own cache by default.

    `RESNET_KERAS_HOME` if set, else `$KERAS_HOME/models`, else
    `~/.keras/models`, so files keras.applications downloaded are reused.
    The folder is never swapped for another one (keras falls back to
    /tmp/.keras when its cache is not writable; we raise CacheError).
    """
    if os.environ.get("RESNET_KERAS_HOME"):
        return Path(os.environ["RESNET_KERAS_HOME"]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "models"


def offline_from_env() -> bool:
    value = os.environ.get("RESNET_KERAS_OFFLINE", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(
        "RESNET_KERAS_OFFLINE must be 1/true/yes/on or 0/false/no/off (or "
        f"unset). Received: RESNET_KERAS_OFFLINE={os.environ['RESNET_KERAS_OFFLINE']!r}"
    )


def check_offline(offline) -> bool:
    """`offline=` of the builders: None (use the environment), True or False."""
    if offline is None:
        return offline_from_env()
    if not isinstance(offline, bool):
        raise InvalidArgumentError(
            f"`offline` must be None, True or False. Received: offline={offline!r}"
        )
    return offline


def timeout_seconds() -> float:
    text = os.environ.get("RESNET_KERAS_TIMEOUT", "").strip()
    if not text:
        return float(TIMEOUT_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidArgumentError(
            "RESNET_KERAS_TIMEOUT must be a positive number of seconds. "
            f"Received: RESNET_KERAS_TIMEOUT={text!r}"
        )
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _allowed_url(url, *, allow_file: bool) -> bool:
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    return parts is not None and not parts.username and not parts.password and bool(
        (parts.scheme == "https" and parts.hostname)
        or (parts.scheme == "http" and _is_loopback(parts.hostname or ""))
        or (allow_file and parts.scheme == "file" and parts.path)
    )


def check_url(url, where: str = "url") -> str:
    """https anywhere; http only to a loopback host; file:// for local mirrors."""
    if not _allowed_url(url, allow_file=True):
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


def not_a_file(path: Path) -> str | None:
    """What sits at `path` if it is neither missing nor a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return "a dangling symbolic link"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one."""
    # is_file() first: hashing a FIFO would block forever.
    return (
        not_a_file(path) is None
        and path.is_file()
        and (wfile.size is None or path.stat().st_size == wfile.size)
        and file_digest(path, wfile.hash_algorithm) == wfile.hash_hex
    )


def cache_state(wfile: WeightsFile, folder: Path | None = None) -> str:
    """'cached' (verified), 'missing', 'corrupt' or 'not a file' for the CLI."""
    path = (folder or cache_dir()) / wfile.file_name
    if not_a_file(path):
        return "not a file"
    if not path.exists():
        return "missing"
    return "cached" if is_verified(path, wfile) else "corrupt"


# --------------------------------------------------------------------------
# Transfers


class _Refused(Exception):
    """A redirect that the URL policy does not allow."""


def _redirect_guard(response, *args, **kwargs):
    """requests hook: refuse, before following it, a redirect off https."""
    if response.is_redirect:
        target = urllib.parse.urljoin(response.url, response.headers["location"])
        if not _allowed_url(target, allow_file=False):
            raise _Refused(
                f"redirected to {target}, which is not https (or http to a "
                "loopback host); refused"
            )
    return response


def _copy_local(url: str, output_file: str, _pooch) -> None:
    """pooch-style downloader for file:// URLs (pooch itself has none)."""
    source = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    if not os.path.isfile(source):
        raise FileNotFoundError(errno.ENOENT, "no such file", source)
    shutil.copyfile(source, output_file)


def _downloader(url: str, progressbar: bool):
    if url.startswith("file:"):
        return _copy_local
    import pooch

    from . import __version__

    timeout = timeout_seconds()
    return pooch.HTTPDownloader(
        progressbar=progressbar,
        timeout=(timeout, timeout),  # connect, read: no request can hang
        hooks={"response": [_redirect_guard]},
        headers={"User-Agent": f"resnet-keras/{__version__}"},
    )


def _describe(url: str, error: BaseException) -> tuple[str, bool]:
    """(one-line reason, retryable) for a failed transfer."""
    import requests

    if isinstance(error, _Refused):
        return str(error), False
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        reason = error.response.reason or ""
        return f"HTTP {status} {reason}".strip(), status >= 500
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects (a redirect loop?)", False
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout_seconds():g} s (timeout)", True
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection closed before the whole file arrived (truncated)", True
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect ({_first_line(error)})", True
    if isinstance(error, requests.RequestException):
        return f"{type(error).__name__}: {_first_line(error)}", False
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device holding the cache", False
    if isinstance(error, OSError):
        return f"{error.strerror or error}", False
    return f"{type(error).__name__}: {_first_line(error)}", False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))


class _Failure(Exception):
    def __init__(self, reason: str, *, integrity: bool = False):
        super().__init__(reason)
        self.integrity = integrity


def _temp_path(folder: Path, file_name: str) -> Path:
    token = f"{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
    return folder / f".{file_name}.{token}{TEMP_SUFFIX}"


def _open_temp(folder: Path, file_name: str) -> Path:
    """Create an empty temp file; mode 0o666 & ~umask, like any new file."""
    path = _temp_path(folder, file_name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    return path


def _download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool) -> None:
    """Download `url` to a temp file, verify it, move it to `path`; or raise _Failure."""
    folder = path.parent
    try:
        temp = _open_temp(folder, wfile.file_name)
    except OSError as error:
        raise _not_writable(folder, error) from error
    try:
        for attempt in range(MAX_RETRIES + 1):
            try:
                _downloader(url, progressbar)(url, str(temp), None)
                break
            except (_Refused, OSError) as error:  # requests' errors are OSErrors
                reason, retryable = _describe(url, error)
                if not retryable or attempt == MAX_RETRIES:
                    raise _Failure(reason) from error
                time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
        size = temp.stat().st_size
        digest = file_digest(temp, wfile.hash_algorithm)
        if digest != wfile.hash_hex or (wfile.size is not None and size != wfile.size):
            what = (
                "an HTML page (an error or login page?), not the weights file"
                if _looks_like_html(temp)
                else "other bytes than the manifest declares"
            )
            raise _Failure(
                f"sent {what}: {size} bytes with {wfile.hash_algorithm} "
                f"{digest}, expected {wfile.hash}",
                integrity=True,
            )
        try:
            with open(temp, "rb") as f:  # durable before it gets the trusted name
                os.fsync(f.fileno())
            os.replace(temp, path)
        except OSError as error:
            raise _not_writable(folder, error) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


# --------------------------------------------------------------------------
# Cache housekeeping


def _not_writable(folder: Path, error: OSError) -> CacheError:
    return CacheError(
        f"The weights cache {folder} cannot be written ({error.strerror or error}). "
        "Make it writable, or set RESNET_KERAS_HOME to a writable folder "
        "(resnet_keras never falls back to another folder by itself)."
    )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CacheError(
            f"Cannot create the weights cache {folder} ({error.strerror or error}). "
            "Create it, or set RESNET_KERAS_HOME (or KERAS_HOME) to a writable "
            "folder; resnet_keras never falls back to another folder by itself."
        ) from error
    if not folder.is_dir():
        raise CacheError(
            f"The weights cache {folder} is not a folder. Set RESNET_KERAS_HOME "
            "to a folder."
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def stale_temp_files(folder: Path, file_name: str | None = None) -> list[Path]:
    """Temp files left by crashed runs (of `file_name`, or of any file)."""
    stale = []
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        stem, _, token = name[: -len(TEMP_SUFFIX)].rpartition(".")
        if file_name is not None and stem != f".{file_name}":
            continue
        host, _, rest = token.partition("-")
        pid_text = rest.partition("-")[0]
        try:
            age = now - os.lstat(folder / name).st_mtime
        except OSError:
            continue
        dead = host == _HOST_TAG and pid_text.isdigit() and not _pid_alive(int(pid_text))
        if dead or age > STALE_TEMP_SECONDS:
            stale.append(folder / name)
    return stale


def _remove_stale_temps(folder: Path, file_name: str) -> None:
    for path in stale_temp_files(folder, file_name):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _set_aside_if_corrupt(path: Path, wfile: WeightsFile) -> bool:
    """Move a cached file that fails its hash to NAME.corrupt; True if moved."""
    if not path.exists() or is_verified(path, wfile):
        return False
    try:
        os.replace(path, path.with_name(path.name + CORRUPT_SUFFIX))
    except OSError:
        return False  # read-only cache: leave it, the error names it
    return True


@contextlib.contextmanager
def _locked(folder: Path, file_name: str):
    """Hold `.NAME.lock` while fetching NAME, if file locks work here."""
    if not USE_FILE_LOCK:
        yield
        return
    import filelock

    lock_path = folder / f".{file_name}.lock"
    lock = filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT_SECONDS)
    try:
        lock.acquire()
    except filelock.Timeout:
        warnings.warn(
            f"Waited {LOCK_TIMEOUT_SECONDS:g} s for another process fetching "
            f"{file_name}; fetching it here too.",
            stacklevel=4,
        )
        yield
        return
    except PermissionError as error:
        raise _not_writable(folder, error) from error
    except OSError as error:  # e.g. ENOLCK: no locks here; still correct
        if error.errno in (errno.EROFS, errno.EACCES):
            raise _not_writable(folder, error) from error
        yield
        return
    try:
        yield
    finally:
        # Unlinked while held so the cache keeps no lock files; filelock
        # (and any waiter on the old inode) retries on a fresh one.
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        lock.release()


# --------------------------------------------------------------------------
# The one entry point


def fetch(
    wfile: WeightsFile,
    *,
    offline: bool | None = None,
    progressbar: bool = True,
    force: bool = False,
    label: str | None = None,
) -> Path:
    """Path of the verified local copy of `wfile`, downloading it if needed.

    Args:
        wfile: The manifest record of the file.
        offline: No network at all; None reads `RESNET_KERAS_OFFLINE`.
        progressbar: Show a tqdm progress bar while downloading.
        force: Download again even if a verified copy is cached; the cached
            copy stays in place, usable, until the new one is verified.
        label: What the file is for (e.g. "resnet50 'imagenet' (top)"),
            used in error messages.
    """
    folder = cache_dir()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    blocker = not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, not a weights file ({what}). Remove it and "
            "try again; resnet_keras never deletes what it did not write."
        )
    if not force and is_verified(path, wfile):
        return path  # also in a read-only cache: no write, no lock
    offline = check_offline(offline)
    if offline:
        corrupt = path.exists()
        moved = False
        if corrupt and folder.is_dir():
            with contextlib.suppress(CacheError), _locked(folder, wfile.file_name):
                moved = _set_aside_if_corrupt(path, wfile)
        state = "is corrupt" if corrupt else "is not in the cache"
        aside = f" (moved to {path.name}{CORRUPT_SUFFIX})" if moved else ""
        raise OfflineError(
            f"Offline mode is on and {what} {state}{aside} ({folder}). "
            f"Download {wfile.urls[0]} and put it at {path} (expected "
            f"{wfile.hash}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
            "offline=)."
        )
    _make_folder(folder)
    with _locked(folder, wfile.file_name):
        _remove_stale_temps(folder, wfile.file_name)
        if not force and is_verified(path, wfile):
            return path  # another process fetched it while we waited
        _set_aside_if_corrupt(path, wfile)
        failures: list[tuple[str, _Failure]] = []
        for url in wfile.urls:
            try:
                _download_verified(url, wfile, path, progressbar)
            except _Failure as failure:
                failures.append((url, failure))
            else:
                return path
    integrity = any(f.integrity for _, f in failures)
    detail = "; ".join(f"{url}: {f}" for url, f in failures)
    kept = (
        f" The cached copy at {path} is unchanged."
        if force and path.exists()
        else " Nothing was saved."
    )
    if integrity:
        remedy = (
            "A server sent a file that does not match the manifest hash. "
            "If the file changed upstream, fix the hash in your manifest "
            "(RESNET_KERAS_MANIFEST or manifest=); otherwise try another mirror."
        )
    else:
        remedy = (
            "Check the network, proxy or mirror URLs (RESNET_KERAS_MANIFEST "
            f"or manifest=), or download the file yourself and put it at {path}."
        )
    error_type = IntegrityError if integrity else DownloadError
    raise error_type(
        f"Could not get a verified {what} (expected {wfile.hash}) into "
        f"{folder}. Tried {len(failures)} URL(s): {detail}.{kept} {remedy}"
    ) from failures[-1][1]
