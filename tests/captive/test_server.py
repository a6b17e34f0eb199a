"""The portal under its production server (waitress), spoken to over real sockets."""
import http.client
import socket

import pytest

from tests.livecheck import footfall_process


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = tmp_path_factory.mktemp("live")
    env = {"FOOTFALL_DATA_DIR": str(data), "FOOTFALL_LISTEN_HOST": "127.0.0.1", "FOOTFALL_LISTEN_PORT": "0",
           "FOOTFALL_PORTAL_URL": "http://portal.test:8080"}
    with footfall_process(["portal"], env) as (proc, port):
        yield port


def raw_request(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_probe_without_user_agent(live):
    answer = raw_request(live, b"GET /generate_204 HTTP/1.1\r\nHost: connectivitycheck.gstatic.com\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 302
    assert b"Location: http://portal.test:8080/?continue=http%3A%2F%2Fconnectivitycheck.gstatic.com%2Fgenerate_204" in answer


def test_http10_probe_without_host(live):
    answer = raw_request(live, b"GET / HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 302


def test_oversized_headers_are_refused_and_the_server_lives_on(live):
    answer = raw_request(live, b"GET / HTTP/1.1\r\nHost: portal.test:8080\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert status_of(answer) in (400, 431)
    conn = http.client.HTTPConnection("127.0.0.1", live, timeout=5)
    conn.request("GET", "/", headers={"Host": "portal.test:8080"})
    assert conn.getresponse().status == 200
    conn.close()


def test_oversized_body_is_refused_before_it_is_read(live):
    answer = raw_request(live, b"POST /connect HTTP/1.1\r\nHost: portal.test:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                               b"Content-Length: 50000000\r\nConnection: close\r\n\r\nemail=x")
    assert status_of(answer) == 413


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"GET /\x00 HTTP/1.1\r\nHost: portal.test:8080\r\nConnection: close\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nHost: portal.test:8080\r\nNoColonHere\r\n\r\n"])
def test_malformed_requests_get_a_4xx(live, line):
    answer = raw_request(live, line)
    assert answer == b"" or 400 <= status_of(answer) < 500


def test_splash_over_the_wire(live):
    conn = http.client.HTTPConnection("127.0.0.1", live, timeout=5)
    conn.request("GET", "/", headers={"Host": "portal.test:8080", "Accept-Language": "en"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200 and b"Free WiFi" in body
    assert response.getheader("Server") == "footfall"
    conn.close()
