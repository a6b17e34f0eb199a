"""The sync client verifies TLS; a CA file can be pinned; plain refusal is clear."""
import datetime
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal import sync
from portal.core import wire

KEY = bytes(range(32))


def make_ca_and_cert(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Footfall test chain CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "central")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "ca.pem"


@pytest.fixture
def https_central(tmp_path):
    ca = make_ca_and_cert(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"applied": 0, "duplicates": 0, "commands": [], "seen_store": self.headers["X-Footfall-Store"]}).encode()
            stamp = int(time.time())
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header(wire.TIMESTAMP_HEADER, str(stamp))  # signed as the central signs (portal/core/wire.py)
            self.send_header(wire.SIGNATURE_HEADER, wire.sign_answer(KEY, stamp, self.headers[wire.SIGNATURE_HEADER], body))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], ca
    server.shutdown()
    server.server_close()


def test_pinned_ca_is_trusted(https_central):
    port, ca = https_central
    status, answer = sync.post(sync.Target(f"https://127.0.0.1:{port}", "hcm-01", KEY, str(ca)), b"x", 1)
    assert status == 200 and answer["seen_store"] == "hcm-01"


def test_an_unknown_certificate_is_refused(https_central):
    port, _ = https_central
    with pytest.raises(sync.SyncError, match="unreachable"):
        sync.post(sync.Target(f"https://127.0.0.1:{port}", "hcm-01", KEY), b"x", 1)


def test_other_schemes_are_refused():
    with pytest.raises(sync.SyncError, match="https://"):
        sync.post(sync.Target("ftp://central.example", "s", KEY), b"x", 1)


def test_a_tls_failure_while_the_clock_is_known_wrong_names_the_clock(https_central, tmp_path):
    """Issue 10: a box whose clock reads before its last good time blames the clock, not the central."""
    from portal import clock
    port, _ = https_central
    tomorrow = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(days=1)
    (tmp_path / "clock.json").write_text(json.dumps({"last_good": tomorrow.isoformat()}))
    clock.load_floor(tmp_path)
    try:
        with pytest.raises(sync.SyncError, match="clock is wrong"):
            sync.post(sync.Target(f"https://127.0.0.1:{port}", "hcm-01", KEY), b"x", 1)
    finally:
        clock.load_floor(tmp_path / "elsewhere")  # no file: no floor, as before
