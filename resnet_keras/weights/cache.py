"""The verified cache: where weights files live, how they get there.

A weights file reaches its final name in the cache only once its hash is
verified: `http.transfer` streams it (bounded, hashed on the way) into a
temp file of our own in the cache folder, the hash is checked, and
`os.replace` moves it into place in one atomic step. Readers therefore
never see a partial file, whether or not file locks work (NFS); the lock
(filelock) only saves a second process from fetching the same 100 MB again.

`open_verified` hands back an open file whose bytes were hashed: a cached
file is hashed through the descriptor that h5py then reads, and a download
through the temp file it was written to. Whatever replaces the path in the
meantime (another process writing the shared keras cache), what loads is
what was verified.

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
import os
import secrets
import socket
import stat
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator

from . import h5, http
from ..errors import (
    CacheError,
    DownloadError,
    IntegrityError,
    InvalidArgumentError,
    OfflineError,
)
from .records import WeightsFile

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
        return _expand("RESNET_KERAS_HOME", os.environ["RESNET_KERAS_HOME"])
    if os.environ.get("KERAS_HOME"):
        return _expand("KERAS_HOME", os.environ["KERAS_HOME"]) / "models"
    return _expand("HOME", os.path.join("~", ".keras")) / "models"


def _expand(variable: str, value: str) -> Path:
    try:
        return Path(value).expanduser()
    except RuntimeError as error:  # '~nosuchuser/c': no such home folder
        raise CacheError(
            f"{variable} must name a folder, and {value!r} starts with a home "
            f"folder that cannot be found ({error}). Received: {variable}="
            f"{value!r}. Use an absolute path or an existing user's ~."
        ) from None


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


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return _digest(f, algorithm)


def _digest(file: BinaryIO, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    file.seek(0)
    for chunk in iter(lambda: file.read(1 << 20), b""):
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


def _open_if_verified(path: Path, wfile: WeightsFile) -> BinaryIO | None:
    """The open file at `path` if it is regular and has the declared size and hash."""
    if not_a_file(path) is not None:
        return None
    try:
        file = h5.open_regular(path)  # checks the descriptor: no FIFO, no swap
    except (OSError, ValueError):
        return None
    size = os.fstat(file.fileno()).st_size
    if (wfile.size is None or size == wfile.size) and _digest(file, wfile.hash_algorithm) == wfile.hash_hex:
        file.seek(0)
        return file
    file.close()
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one."""
    file = _open_if_verified(path, wfile)
    if file is None:
        return False
    file.close()
    return True


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


class _Failure(Exception):
    def __init__(self, reason: str, *, integrity: bool = False):
        super().__init__(reason)
        self.integrity = integrity


def _temp_path(folder: Path, file_name: str) -> Path:
    token = f"{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
    return folder / f".{file_name}.{token}{TEMP_SUFFIX}"


def _open_temp(folder: Path, file_name: str) -> tuple[Path, BinaryIO]:
    """Create a new temp file for reading and writing; mode 0o666 & ~umask."""
    path = _temp_path(folder, file_name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    return path, os.fdopen(fd, "w+b")


# The one call that moves bytes (tests replace it to simulate faults).
_transfer = http.transfer


def _attempts(url: str, wfile: WeightsFile, temp: BinaryIO, progressbar: bool) -> http.Transferred:
    """Transfer with bounded retries; raise _Failure saying what went wrong and for how long."""
    timeout = timeout_seconds()
    started = time.monotonic()
    for attempt in range(MAX_RETRIES + 1):
        temp.seek(0)
        temp.truncate()
        try:
            return _transfer(
                url, temp, algorithm=wfile.hash_algorithm, limit=wfile.max_bytes,
                timeout=timeout, name=wfile.file_name, progressbar=progressbar,
            )
        except (http.TransferError, OSError) as error:  # requests' errors are OSErrors
            reason, retryable = http.describe(error, timeout)
            integrity = getattr(error, "integrity", False)
            if not retryable or attempt == MAX_RETRIES:
                if attempt:
                    waited = time.monotonic() - started
                    reason += f" ({attempt + 1} tries, {waited:.0f} s in all)"
                raise _Failure(reason, integrity=integrity) from error
            time.sleep(RETRY_WAIT_SECONDS * (attempt + 1))
    raise AssertionError("unreachable")


def _download_verified(url: str, wfile: WeightsFile, path: Path, progressbar: bool) -> BinaryIO:
    """Download `url` into a temp file, verify, move it to `path`; return it open, or raise _Failure."""
    folder = path.parent
    try:
        temp_path, temp = _open_temp(folder, wfile.file_name)
    except OSError as error:
        raise _not_writable(folder, error) from error
    keep = False
    try:
        http.announce(url, path, progressbar)
        got = _attempts(url, wfile, temp, progressbar)
        if got.digest != wfile.hash_hex or (wfile.size is not None and got.size != wfile.size):
            temp.seek(0)
            html = "html" in got.content_type.lower() or h5.looks_like_html(temp.read(512))
            what = (
                "an HTML page (an error or login page?), not the weights file"
                if html
                else "other bytes than the manifest declares"
            )
            raise _Failure(
                f"sent {what}: {got.size} bytes with {wfile.hash_algorithm} "
                f"{got.digest}, expected {wfile.hash}",
                integrity=True,
            )
        try:
            temp.flush()
            os.fsync(temp.fileno())  # durable before it gets the trusted name
            os.replace(temp_path, path)
        except OSError as error:
            raise _not_writable(folder, error) from error
        keep = True
        temp.seek(0)
        return temp  # the verified inode itself, now at `path`
    finally:
        if not keep:
            temp.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)


# --------------------------------------------------------------------------
# Cache housekeeping


def _not_writable(folder: Path, error: OSError, why: str = "") -> CacheError:
    return CacheError(
        f"The weights cache {folder} cannot be written ({error.strerror or error}).{why} "
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
# The entry points


def fetch(wfile: WeightsFile, **kwargs) -> Path:
    """Path of the verified local copy of `wfile`, downloading it if needed.

    Takes the arguments of `open_verified`.
    """
    with open_verified(wfile, **kwargs):
        return cache_dir() / wfile.file_name


@contextlib.contextmanager
def open_verified(
    wfile: WeightsFile,
    *,
    offline: bool | None = None,
    progressbar: bool = True,
    force: bool = False,
    label: str | None = None,
) -> Iterator[BinaryIO]:
    """An open file holding the verified bytes of `wfile`, fetched if needed.

    Args:
        wfile: The manifest record of the file.
        offline: No network at all; None reads `RESNET_KERAS_OFFLINE`.
        progressbar: Say what is downloaded where and show a progress bar.
        force: Download again even if a verified copy is cached; the cached
            copy stays in place, usable, until the new one is verified.
        label: What the file is for (e.g. "resnet50 'imagenet' (top)"),
            used in error messages.
    """
    file = _obtain(wfile, offline=offline, progressbar=progressbar, force=force, label=label)
    with file:
        yield file


def _obtain(wfile: WeightsFile, *, offline, progressbar, force, label) -> BinaryIO:
    folder = cache_dir()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    blocker = not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, not a weights file ({what}). Remove it and "
            "try again; resnet_keras never deletes what it did not write."
        )
    if not force:
        cached = _open_if_verified(path, wfile)
        if cached is not None:
            return cached  # also in a read-only cache: no write, no lock
    corrupt = path.exists()  # and not verified (or force)
    offline = check_offline(offline)
    if offline:
        moved = False
        if corrupt and folder.is_dir():
            with contextlib.suppress(CacheError), _locked(folder, wfile.file_name):
                moved = _set_aside_if_corrupt(path, wfile)
        state = "is corrupt (it fails its hash)" if corrupt else "is not in the cache"
        aside = f" (moved to {path.name}{CORRUPT_SUFFIX})" if moved else ""
        raise OfflineError(
            f"Offline mode is on and {what} {state}{aside} ({folder}). "
            f"Download {wfile.urls[0]} and put it at {path} (expected "
            f"{wfile.hash}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
            "offline=)."
        )
    why = (
        f" The cached {wfile.file_name} is corrupt (it fails its {wfile.hash_algorithm} "
        "hash) and must be replaced."
        if corrupt and not force
        else ""
    )
    _make_folder(folder)
    try:
        with _locked(folder, wfile.file_name):
            _remove_stale_temps(folder, wfile.file_name)
            if not force:
                cached = _open_if_verified(path, wfile)
                if cached is not None:
                    return cached  # another process fetched it while we waited
            _set_aside_if_corrupt(path, wfile)
            failures: list[tuple[str, _Failure]] = []
            for url in wfile.urls:
                try:
                    return _download_verified(url, wfile, path, progressbar)
                except _Failure as failure:
                    failures.append((url, failure))
    except CacheError as error:
        if why and why not in str(error):
            raise CacheError(f"{error}{why}") from error
        raise
    raise _all_failed(wfile, path, what, failures, force)


def _all_failed(wfile, path: Path, what: str, failures, force: bool) -> Exception:
    integrity = any(f.integrity for _, f in failures)
    detail = "; ".join(f"{url}: {f}" for url, f in failures)
    kept = (
        f" The cached copy at {path} is unchanged."
        if force and path.exists()
        else " Nothing was saved."
    )
    if integrity:
        remedy = (
            "A server sent a file that does not match the manifest. "
            "If the file changed upstream, fix the hash in your manifest "
            "(and its size, if given: RESNET_KERAS_MANIFEST or manifest=); otherwise try "
            "another mirror."
        )
    else:
        remedy = (
            "Check the network, proxy or mirror URLs (RESNET_KERAS_MANIFEST "
            f"or manifest=), or download the file yourself and put it at {path}."
        )
    error_type = IntegrityError if integrity else DownloadError
    error = error_type(
        f"Could not get a verified {what} (expected {wfile.hash}) into "
        f"{path.parent}. Tried {len(failures)} URL(s): {detail}.{kept} {remedy}"
    )
    error.__cause__ = failures[-1][1]
    return error
