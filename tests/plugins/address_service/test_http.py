"""HTTP/1.1 as the bundled server speaks it (the deployed process): keep-alive, pipelining, limits, odd clients."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

HEAD = b"Host: x\r\n"


def exchange(server, data: bytes, *, half_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send *data* on a new connection and read until the server closes it (or *timeout* passes)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def statuses(answer: bytes) -> list[int]:
    """The status codes of the answers in *answer* (each starts a line; bodies end in a newline)."""
    return [int(code) for code in re.findall(rb"(?:^|\n)HTTP/1\.1 (\d{3}) ", answer)]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


@pytest.fixture(scope="module")
def server(launch_once, tmp_path_factory):
    """One for the module; with a state file, so the lease routes are answered by worker threads, as deployed."""
    state = tmp_path_factory.mktemp("state") / "s.json"
    return launch_once("--cidr", "192.0.2.0/24", "--state-file", str(state), "--idle-timeout", "1")


class TestConnections:
    """Keep-alive, pipelining and closing."""

    def test_pipelined_requests_answered_in_order(self, server) -> None:
        """Requests sent back to back on one connection are answered in order, each once."""
        body = json.dumps({"service": "ns/a"}).encode()
        post = b"POST /v1/ip HTTP/1.1\r\n" + HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
        answer = exchange(
            server, post + b"GET /v1/status HTTP/1.1\r\n" + HEAD + b"\r\n" + post + b"GET /nope HTTP/1.1\r\n\r\n"
        )
        assert statuses(answer) == [201, 200, 200, 404]
        assert answer.count(b'"ns/a"') == 3  # the two answers to the POSTs, and the one lease in the status

    def test_half_closed_client_gets_its_answer(self, server) -> None:
        """A client that shuts its sending side after the request still gets the answer, then the close."""
        body = b'{"service": "ns/b"}'
        answer = exchange(
            server,
            b"POST /v1/ip HTTP/1.1\r\n" + HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body,
            half_close=True,
        )
        assert statuses(answer) == [201] and answer.endswith(b"}\n")

    def test_http10(self, server) -> None:
        """HTTP/1.0 closes after the answer unless it asks for keep-alive, which the answer then confirms."""
        closed = exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert closed.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in closed
        kept = exchange(server, b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", timeout=0.5)
        assert b"Connection: keep-alive\r\n" in kept

    def test_head(self, server) -> None:
        """HEAD is answered like GET without the body (405 on the API's paths, as any unknown method)."""
        answer = exchange(server, b"HEAD /v1/ip HTTP/1.1\r\n" + HEAD + b"Connection: close\r\n\r\n")
        assert statuses(answer) == [405] and answer.endswith(b"\r\n\r\n")

    def test_expect_continue_and_chunked(self, server) -> None:
        """Expect: 100-continue gets a 100 first; a chunked body is read like any other."""
        answer = exchange(
            server,
            b"POST /v1/ip HTTP/1.1\r\n" + HEAD + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunked(b'{"service"', b': "ns/c"}\n'),
        )
        assert statuses(answer) == [100, 201] and b'"service": "ns/c"' in answer

    def test_reader_that_never_reads_is_cut(self, launch) -> None:
        """A client pipelining requests without reading the answers is cut after --read-timeout, no memory kept."""
        server = launch("--cidr", "192.0.2.0/24", "--read-timeout", "1")
        with socket.create_connection((server.host, server.port)) as sock:
            sock.setblocking(False)
            sent, started = 0, time.monotonic()
            request = b"GET /metrics HTTP/1.1\r\n" + HEAD + b"\r\n"
            while time.monotonic() - started < 10:
                try:
                    sent += sock.send(request * 100)
                except BlockingIOError:
                    time.sleep(0.05)  # the server has stopped reading
                except OSError:
                    break  # cut
            cut = time.monotonic() - started
        assert sent > 0 and cut < 1 + 3
        assert server.ask("GET", "/healthz")[0] == 200


class TestLimits:
    """Oversized and malformed requests are answered with 4xx and the connection is closed."""

    def test_headers_too_large(self, server) -> None:
        """More than 64 KiB of request head is 431."""
        answer = exchange(server, b"GET /healthz HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        assert statuses(answer) == [431] and b"Connection: close\r\n" in answer

    def test_chunked_body_too_large(self, server) -> None:
        """A chunked body past 64 KiB is 413, as a declared one."""
        chunk = b"a" * 40_000
        answer = exchange(
            server,
            b"POST /v1/mac HTTP/1.1\r\n" + HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(chunk, chunk),
        )  # fmt: skip
        assert statuses(answer) == [413]

    @pytest.mark.parametrize(
        ("request_", "says"),
        [
            (b"GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"bad Content-Length header"),
            (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"bad Content-Length header"),
            (b"NOT A REQUEST\r\n\r\n", b"malformed HTTP request"),
            (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", b"malformed HTTP request"),
        ],
    )
    def test_malformed_request(self, server, request_: bytes, says: bytes) -> None:
        """A request llhttp refuses is a 400 saying why, and the connection is closed."""
        answer = exchange(server, request_)
        assert statuses(answer) == [400] and says in answer and b"Connection: close\r\n" in answer
