"""Servers that stall before the body (issue 19, part 2) and TLS behind a long path (part 7).

Every phase of a request is read by one bounded reader (weights/download/download.py):
connect, the TLS handshake, a status line and headers trickled a byte at a
time, `100 Continue` sent forever, a chunked trailer that never ends, a
redirect chain that trickles. Each ends in a typed DownloadError whose one
line names the phase and the limit, in about one or three timeouts (0.5 s
here), with nothing left in the cache.
"""

from __future__ import annotations

import time

import pytest

from cache_checks import assert_clean_cache, fast_network, payload, weights_file  # noqa: F401
from http_mirror import Listener, Mirror, Raw, Reply, self_signed_certificate
from resnet_keras.errors import DownloadError
from resnet_keras.weights.download import cache, download

# Each case waits out a bound (0.3-1.5 s): the slow tier.
pytestmark = [pytest.mark.usefixtures("fast_network"), pytest.mark.slow]

DATA = payload(50_000)
NAME = "tiny_weights.h5"
TIMEOUT = 0.5  # fast_network's RESNET_KERAS_TIMEOUT
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(DATA)


@pytest.fixture(autouse=True)
def one_try(monkeypatch):
    monkeypatch.setattr(download, "MAX_RETRIES", 0)


def refused(url, isolated_env, match, *, within: float) -> str:
    """The fetch fails with a typed one-line error matching `match`, within `within` s, cache clean."""
    start = time.monotonic()
    with pytest.raises(DownloadError, match=match) as info:
        cache.fetch(weights_file(NAME, DATA, [url]), progressbar=False)
    elapsed = time.monotonic() - start
    assert elapsed < within, f"took {elapsed:.1f} s"
    message = str(info.value)
    assert "\n" not in message and url in message
    assert_clean_cache(isolated_env)
    return message


def test_a_connect_that_never_completes(isolated_env):
    with Listener(backlog_full=True) as listener:
        refused(listener.url(NAME, "http"), isolated_env,
                r"the TCP connect did not finish within 0.5 s \(RESNET_KERAS_TIMEOUT\)", within=2)


@pytest.mark.parametrize("trickle", [b"", b"\x16\x03\x01\x02\x00"], ids=["silent", "trickled"])
def test_a_tls_handshake_that_never_completes(isolated_env, trickle):
    with Listener(trickle=trickle, pause=0.05) as listener:
        refused(listener.url(NAME), isolated_env,
                r"the TLS handshake did not finish within 0.5 s \(RESNET_KERAS_TIMEOUT\)", within=2)


def test_a_status_line_and_headers_trickled_a_byte_at_a_time(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(raw=[Raw(HEAD, pause=0.02, step=1), Raw(DATA)])])
    message = refused(url, isolated_env, r"the status line and headers did not finish within 0\.5 s "
                      r"\(RESNET_KERAS_TIMEOUT\); \d+ bytes came", within=2)
    assert "a trickling server" in message


@pytest.mark.parametrize("pause, timeout, match", [
    (0.002, TIMEOUT, r"the status line and headers did not finish within 0\.5 s"),
    # The flood must reach the byte limit before the timeout, also on a loaded machine.
    (0.0, 10 * TIMEOUT, r"sent more than 65,536 bytes in the status line and headers, the most it may take"),
], ids=["steady", "flood"])
def test_100_continue_sent_forever(mirror, isolated_env, monkeypatch, pause, timeout, match):
    monkeypatch.setenv("RESNET_KERAS_TIMEOUT", str(timeout))
    url = mirror.script(NAME, [Reply(raw=[Raw(b"HTTP/1.1 100 Continue\r\n\r\n", pause=pause, forever=True)])])
    refused(url, isolated_env, match, within=4 * timeout)


def _chunked(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(body), body)


def test_a_chunked_trailer_that_streams_forever(mirror, isolated_env):
    endless = Raw(b"X-Padding: " + b"a" * 60 + b"\r\n", pause=0.005, forever=True)
    url = mirror.script(NAME, [Reply(raw=[Raw(_chunked(DATA)), endless])])
    refused(url, isolated_env, r"the chunked trailer after the body did not finish within 0\.5 s", within=2)


def test_a_chunked_body_with_a_short_trailer_still_downloads(mirror, isolated_env):
    url = mirror.script(NAME, [Reply(raw=[Raw(_chunked(DATA) + b"X-Checksum: none\r\n\r\n")])])
    cache.fetch(weights_file(NAME, DATA, [url]), progressbar=False)
    assert_clean_cache(isolated_env, {NAME: DATA})


def test_a_redirect_chain_that_trickles_is_bounded_as_a_whole(mirror, isolated_env):
    """Each hop answers within the timeout; all of them together take too long."""
    final = mirror.add("data/" + NAME, DATA)
    hops = 5
    for i in range(hops):
        target = f"/hop{i + 1}" if i + 1 < hops else final
        head = b"HTTP/1.1 302 Found\r\nLocation: %s\r\nConnection: close\r\n\r\n" % target.encode()
        pause = 0.3 / len(head)  # about 0.3 s a hop: under the 0.5 s of one head
        mirror.script(f"hop{i}", [Reply(raw=[Raw(head, pause=pause, step=1)])])
    message = refused(mirror.url("hop0"), isolated_env, r"took more than 1\.5 s \(3 x RESNET_KERAS_TIMEOUT\) "
                      r"for everything before the body \(\d redirects\)", within=2.5)
    assert "of redirect" in message and mirror.count("data/" + NAME) == 0


def test_phases_are_entered_in_order_on_a_good_download(mirror, isolated_env, monkeypatch):
    """The guard sees connect, head and body (and nothing is left over for the trailer)."""
    seen = []
    real_enter = download.Guard.enter

    def enter(self, phase):
        seen.append(phase)
        return real_enter(self, phase)

    monkeypatch.setattr(download.Guard, "enter", enter)
    url = mirror.add(NAME, DATA)
    cache.fetch(weights_file(NAME, DATA, [url]), progressbar=False)
    assert seen[:3] == [download.CONNECT, download.CONNECT, download.HEAD] and seen[-1] == download.BODY


# -- 7. a TLS failure behind a long mirror path keeps the words that name it ----------------


@pytest.mark.parametrize("path_length", [10, 3000])
def test_an_untrusted_certificate_is_named_whatever_the_url_length(tmp_path, isolated_env, path_length):
    certificate = self_signed_certificate(tmp_path)
    with Mirror(tls=certificate) as secure:
        url = secure.add("m" * path_length + "/" + NAME, DATA)
        message = refused(url, isolated_env, r"TLS/SSL error: certificate verify failed \(self-signed "
                          r"certificate\)", within=5)
    reason = message.split(url + ": ", 1)[1]
    assert reason.startswith("TLS/SSL error") and "REQUESTS_CA_BUNDLE" in reason
    assert secure.requests == []  # refused before a request was sent


def test_a_long_cause_keeps_its_end_where_the_reason_names_it():
    """A root cause that quotes a long URL before the words that name it keeps both ends."""
    import requests

    cause = OSError(f"<connection to https://mirror/{'m' * 3000}>: [Errno 111] Connection refused")
    reason, retryable = download.describe(requests.ConnectionError(cause), TIMEOUT)
    assert reason.startswith("cannot connect (<connection to https://mirror/")
    assert reason.endswith("[Errno 111] Connection refused)") and len(reason) < 250 and retryable


def test_the_weights_page_states_the_rules_the_code_has():
    from pathlib import Path

    from resnet_keras.weights.download import snapshot

    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "weights.md").read_text().split())
    assert f"less than {download.MIN_BYTES_PER_SECOND:,} bytes/s over a whole timeout period" in page
    assert f"within {download.HEAD_TIMEOUTS} T" in page
    assert f"above {snapshot.MAX_LOCAL_BYTES >> 30} GiB" in page
