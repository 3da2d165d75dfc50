"""The verified cache: where weights files live, how they get there, its settings, and its own files.

The shared-cache rule (snapshot.py): what loads is bytes in our own memory,
read once within the manifest's byte limit and hashed there; no parser
reads the file on disk. keras' `get_file` rewrites files of this folder in
place and deletes them when a download fails; whatever it does, what loads
is what was verified.

A weights file reaches its final name in the cache only once its hash is
verified (`store_download`: into memory and checked by
`download.download_verified`, then the package's one atomic write,
`files.replaced`: a temp file, fsync'd, renamed in one step).
Readers therefore never see a partial file of ours, whether or not file
locks work (NFS); the lock only saves a second process from fetching the
same 100 MB again. The cache's own files (temps, locks, full-hash records)
are described in the second half of this module.

A cached file that fails its check is looked at again while it keeps
changing (keras may be rewriting it: we looked in the middle), for at most
a timeout period (`snapshot.wait_while_written`). Only a file that has
stopped changing is judged corrupt and set aside.

A file with a prefix hash is accepted when its SHA-256 starts with the
prefix and, once a record exists, equals the recorded full hash: the record
is written at the first verification (download or cache hit) and never
replaced while it is well formed.

The environment, read once per call: RESNET_KERAS_HOME (else
$KERAS_HOME/models, else ~/.keras/models), RESNET_KERAS_OFFLINE and
RESNET_KERAS_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator

from ...errors import CacheError, InvalidArgumentError, OfflineError
from ...files import atomic_write, replaced
from ..manifest.records import CORRUPT_SUFFIX, LOCK_SUFFIX, RECORD_SUFFIX, TEMP_SUFFIX, WeightsFile
from . import download, snapshot


# Seconds to wait for a connection and between two bytes of an answer, on
# every request. `RESNET_KERAS_TIMEOUT` overrides it; tests set it low.
TIMEOUT_SECONDS = 30.0
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


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


def check_offline(offline) -> bool:
    """`offline=` of the builders: None (read RESNET_KERAS_OFFLINE), True or False."""
    if offline is None:
        value = os.environ.get("RESNET_KERAS_OFFLINE", "").strip().lower()
        if value in _TRUE | _FALSE:
            return value in _TRUE
        raise InvalidArgumentError(
            "RESNET_KERAS_OFFLINE must be 1/true/yes/on or 0/false/no/off (or "
            f"unset). Received: RESNET_KERAS_OFFLINE={os.environ['RESNET_KERAS_OFFLINE']!r}"
        )
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


def _read_if_verified(path: Path, wfile: WeightsFile) -> tuple[bytes, str] | None:
    """(bytes, digest) of `path`, read once, if it is regular and has the declared size and hash.

    With a prefix hash, the full SHA-256 must also equal the record, if
    there is one; a malformed record fails the file.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or (wfile.size is not None and info.st_size != wfile.size):
            return None  # nothing there, not a file, or not worth reading
        data = snapshot.read_once(path, wfile.max_bytes)
    except (OSError, ValueError):  # missing, not regular, too large, changed while read
        return None
    if wfile.size is not None and len(data) != wfile.size:
        return None
    digest = hashlib.new(wfile.hash_algorithm, data).hexdigest()
    recorded = read_record(path) if wfile.weak_hash else None
    if wfile.matches(digest) and recorded in (None, digest):
        return data, digest
    return None


def is_verified(path: Path, wfile: WeightsFile) -> bool:
    """True if `path` is a regular file whose hash is the declared one (and the recorded one)."""
    return _read_if_verified(path, wfile) is not None


def _look(path: Path, wfile: WeightsFile, wait: float) -> tuple[tuple[bytes, str] | None, str]:
    """(verified bytes and digest, or None; 'verified', 'missing', 'corrupt' or 'being written')."""
    verified = _read_if_verified(path, wfile)
    if verified is not None:
        return verified, "verified"
    if not os.path.lexists(path):
        return None, "missing"
    verified, changing = snapshot.wait_while_written(path, lambda p: _read_if_verified(p, wfile), wait=wait)
    if verified is not None:
        return verified, "verified"
    if changing:
        return None, "being written"
    return None, "corrupt" if os.path.lexists(path) else "missing"


def _failed_check(path: Path, wfile: WeightsFile) -> str:
    """Which check a cached file failed, for error messages (reads no weights)."""
    recorded = read_record(path) if wfile.weak_hash else None
    record = record_path(path).name
    if recorded == MALFORMED:
        return f"its full-hash record {record} is malformed"
    if recorded is not None:
        return (
            f"it fails its weaker {wfile.hash_kind} hash or the full SHA-256 "
            f"recorded in {record} at its first verification"
        )
    return f"it fails its {wfile.hash_kind} hash"


def cache_state(wfile: WeightsFile, folder: Path | None = None) -> str:
    """'cached' (verified), 'missing', 'corrupt' or 'not a file' for the CLI."""
    path = (folder or cache_dir()) / wfile.file_name
    if not_a_file(path):
        return "not a file"
    if not path.exists():
        return "missing"
    return "cached" if is_verified(path, wfile) else "corrupt"


def _set_aside_if_corrupt(path: Path, wfile: WeightsFile) -> bool:
    """Move a cached file that fails its hash to NAME.corrupt; True if moved.

    A malformed full-hash record cannot vouch for any file: it goes to
    NAME.sha256.corrupt. A well-formed one stays, to hold the next download.
    """
    if wfile.weak_hash and read_record(path) == MALFORMED:
        set_aside(record_path(path))
        corrupt = path.exists()  # whatever it holds, no record vouches for it
    else:
        corrupt = path.exists() and not is_verified(path, wfile)
    return corrupt and set_aside(path)  # read-only cache: left, the error names it


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
    """A file object over the verified bytes of `wfile` (in memory), fetched if needed.

    Args:
        wfile: The manifest record of the file.
        offline: No network at all; None reads `RESNET_KERAS_OFFLINE`.
        progressbar: Say what is downloaded where and show a progress bar.
        force: Download again even if a verified copy is cached; the cached
            copy stays in place, usable, until the new one is verified.
        label: What the file is for (e.g. "resnet50 'imagenet' (top)"),
            used in error messages.
    """
    data = _obtain(wfile, offline=offline, progressbar=progressbar, force=force, label=label)
    with snapshot.as_file(data) as file:
        yield file


def _obtain(wfile: WeightsFile, *, offline, progressbar, force, label) -> bytes:
    folder, timeout = cache_dir(), timeout_seconds()
    path = folder / wfile.file_name
    what = f"{label}: {wfile.file_name}" if label else wfile.file_name
    _check_not_blocked(path, f"not a weights file ({what})")
    if wfile.weak_hash:
        _check_not_blocked(record_path(path), f"not the full-hash record of {what}")
    state = "not checked"  # force: the cached copy is not looked at
    if not force:
        verified, state = _look(path, wfile, timeout)
        if verified is not None:
            return _recorded_hit(path, wfile, *verified)
    failed = _failed_check(path, wfile) if state == "corrupt" else ""
    if check_offline(offline):
        raise _offline_error(wfile, path, what, state, failed, timeout)
    why = f" The cached {wfile.file_name} is corrupt ({failed}) and must be replaced." if failed else ""
    make_folder(folder)
    try:
        with locked(folder, wfile.file_name):
            remove_stale_temps(folder, wfile.file_name)
            if not force:
                verified = _read_if_verified(path, wfile)
                if verified is not None:  # another process fetched it while we waited
                    return _recorded_hit(path, wfile, *verified)
            if state != "being written":  # a file still being written is its writer's
                _set_aside_if_corrupt(path, wfile)
            failures: list[tuple[str, download.Failure]] = []
            for url in wfile.urls:
                try:
                    return store_download(url, wfile, path, progressbar, timeout)
                except download.Failure as failure:
                    failures.append((url, failure))
    except CacheError as error:
        if why and why not in str(error):
            raise CacheError(f"{error}{why}") from error
        raise
    raise download.all_failed(wfile, path, what, failures, force)


def store_download(url: str, wfile: WeightsFile, path: Path, progressbar: bool, timeout: float) -> bytes:
    """Download `url` (verified in memory), store it at `path`; return the bytes, or raise download.Failure.

    The temp file is made first, so a cache that cannot be written fails
    before the network is used. A prefix-hash file must also match the
    full-hash record of the first verified download, and without a record
    gets one before the file gets its name.
    """
    folder = path.parent
    with contextlib.ExitStack() as staged:
        try:
            temp = staged.enter_context(replaced(path, temp_path(folder, wfile.file_name)))
        except OSError as error:
            raise not_writable(folder, error) from error
        data, digest = download.download_verified(url, wfile, path, progressbar, timeout)
        recorded = read_record(path) if wfile.weak_hash else None
        if recorded is not None and recorded != digest:
            record = record_path(path)
            raise download.Failure(
                f"sent a file that passes the weaker {wfile.hash} check but whose "
                f"SHA-256 {digest} is not the one recorded in {record} at "
                f"the first verified download ({recorded}); if you trust the new "
                f"file, remove {record} and try again",
                integrity=True,
            )
        try:
            temp.write_bytes(data)
            if wfile.weak_hash:
                write_record_if_missing(path, digest)
            staged.close()  # fsync'd, then the trusted name
        except OSError as error:
            raise not_writable(folder, error) from error
    return data


def _offline_error(wfile, path: Path, what: str, state: str, failed: str, timeout: float) -> OfflineError:
    folder = path.parent
    moved = False
    if state == "corrupt" and folder.is_dir():
        with contextlib.suppress(CacheError), locked(folder, wfile.file_name):
            moved = _set_aside_if_corrupt(path, wfile)
    described = {
        "corrupt": f"is corrupt ({failed})",
        "being written": (
            "is being written by another program (it kept changing for "
            f"{timeout:g} s, RESNET_KERAS_TIMEOUT; keras rewrites "
            "its files in place): try again when it is done"
        ),
    }
    state_text = described.get(state, "is not in the cache")
    aside = f" (moved to {path.name}{CORRUPT_SUFFIX})" if moved else ""
    return OfflineError(
        f"Offline mode is on and {what} {state_text}{aside} ({folder}). "
        f"Download {wfile.urls[0]} and put it at {path} (expected "
        f"{wfile.hash_text}), or turn offline mode off (RESNET_KERAS_OFFLINE, "
        "offline=)."
    )


def _check_not_blocked(path: Path, role: str) -> None:
    blocker = not_a_file(path)
    if blocker:
        raise CacheError(
            f"{path} is {blocker}, {role}. Remove it and try again; "
            "resnet_keras never deletes what it did not write."
        )


def _recorded_hit(path: Path, wfile: WeightsFile, data: bytes, digest: str) -> bytes:
    """A verified cache hit; a prefix-hash file without a record gets one now.

    A read-only cache cannot take the record: the file still loads, checked
    against its prefix only (as at a first download).
    """
    if wfile.weak_hash:
        with contextlib.suppress(OSError):
            write_record_if_missing(path, digest)
    return data


# --------------------------------------------------------------------------
# The cache's own files: temp downloads, locks, full-hash records, and what crashed runs left.
#
# For a file `NAME` of the manifest (the suffixes are `manifest.records`', so
# that no manifest can name one of these files):
#     .NAME.<host>-<pid>-<rand>.part   a download in progress (removed when it
#                                      ends, or by a later run once its
#                                      process is gone)
#     .NAME.lock                       held while one process fetches NAME
#     NAME.corrupt                     a cached NAME that failed its hash
#     NAME.sha256                      the full SHA-256 of NAME, when the
#                                      manifest declares only a prefix
#     NAME.sha256.corrupt              a malformed record, set aside
#
# The cache writes with its own temp files, not `files.replaced`: their
# names carry the host and process id, which is how a later run tells the
# leftovers of a crashed process from a download in progress.
#
# Full-hash records: torchvision publishes the first 8 hex digits of a file's
# SHA-256 (32 bits: a matching file can be made on purpose). So the first
# time such a file is verified, its full SHA-256 is written beside it, one
# line in `sha256sum` format (`<64 hex>  NAME`; `sha256sum -c NAME.sha256`
# checks it), and from then on the cache holds the file to that full hash.
# A record is trusted only if it is exactly that line for exactly that name;
# anything else is `MALFORMED`, and the cache treats file and record as a
# corrupt entry.

# How long to wait for another process fetching the same file; after that we
# fetch anyway (the atomic rename keeps the cache correct without the lock).
LOCK_TIMEOUT_SECONDS = 900.0
USE_FILE_LOCK = True
# A temp file whose process is gone (same host), or this old, is from a
# crashed run and is removed by the next fetch of the same file.
STALE_TEMP_SECONDS = 24 * 3600.0
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# A record is one line: 64 hex digits, two spaces, a name of at most 200
# UTF-8 bytes (manifest.records.MAX_FILE_NAME), a newline.
MAX_RECORD_BYTES = 1024
MALFORMED = "malformed"
_RECORD_LINE = re.compile(rb"([0-9a-f]{64})  ([^\n]+)\n")


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


def temp_path(folder: Path, file_name: str) -> Path:
    token = f"{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
    return folder / f".{file_name}.{token}{TEMP_SUFFIX}"


def not_writable(folder: Path, error: OSError, why: str = "") -> CacheError:
    return CacheError(
        f"The weights cache {folder} cannot be written ({error.strerror or error}).{why} "
        "Make it writable, or set RESNET_KERAS_HOME to a writable folder "
        "(resnet_keras never falls back to another folder by itself)."
    )


def make_folder(folder: Path) -> None:
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


def set_aside(path: Path) -> bool:
    """Move `path` to `NAME.corrupt`; True if moved (False: a read-only cache, or gone)."""
    try:
        os.replace(path, path.with_name(path.name + CORRUPT_SUFFIX))
    except OSError:
        return False
    return True


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


def remove_stale_temps(folder: Path, file_name: str) -> None:
    """Remove what crashed fetches of `file_name` (and of its hash record) left."""
    for name in (file_name, file_name + RECORD_SUFFIX):
        for path in stale_temp_files(folder, name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def locked(folder: Path, file_name: str):
    """Hold `.NAME.lock` while fetching NAME, if file locks work here."""
    if not USE_FILE_LOCK:
        yield
        return
    import filelock

    lock_path = folder / f".{file_name}{LOCK_SUFFIX}"
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
        raise not_writable(folder, error) from error
    except OSError as error:  # e.g. ENOLCK: no locks here; still correct
        if error.errno in (errno.EROFS, errno.EACCES):
            raise not_writable(folder, error) from error
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
# Full-hash records of files whose manifest hash is only a prefix


def record_path(path: Path) -> Path:
    """Where the record of the cached file `path` lives."""
    return path.with_name(path.name + RECORD_SUFFIX)


def read_record(path: Path) -> str | None:
    """The recorded full SHA-256 of `path`, None if there is no record, or MALFORMED."""
    record = record_path(path)
    if not os.path.lexists(record):
        return None
    if not_a_file(record) is not None:
        return MALFORMED
    try:
        with open(record, "rb") as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return MALFORMED
    match = _RECORD_LINE.fullmatch(data)
    if match is None or match.group(2) != path.name.encode("utf-8"):
        return MALFORMED
    return match.group(1).decode("ascii")


def write_record_if_missing(path: Path, digest: str) -> None:
    """Record `digest` for the verified `path` (temp file, fsync, rename) unless a record exists.

    A malformed record counts as one: it is set aside, never overwritten here.
    OSError if the cache cannot take it.
    """
    if read_record(path) is not None:
        return
    with atomic_write(record_path(path), temp_path(path.parent, path.name + RECORD_SUFFIX)) as f:
        f.write(f"{digest}  {path.name}\n".encode("utf-8"))
