"""Debian's nginx, run by a test with the TLS-front site that deploy/install.sh writes.

Debian's nginx.conf includes /etc/nginx/conf.d/*.conf inside its http{} block; the tests put the
rendered site in a main configuration of their own that does the same, with every path (pid, logs,
temporary files) in the test's directory, so nothing of the host's nginx is read or touched.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import have, require

ROOT = Path(__file__).resolve().parents[2]


def need_nginx() -> None:
    require(have("nginx") or Path("/usr/sbin/nginx").exists(), "Debian package nginx is not installed")


def nginx_binary() -> str:
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"


def free_port(*hosts: str) -> int:
    """A port free on every one of `hosts` (the portal and nginx share a number on two addresses)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")


def main_config(directory: Path, site: Path) -> Path:
    """A main nginx.conf that includes `site` in http{}, as Debian's includes conf.d/*.conf."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    # As root, nginx's workers would switch to nobody, who cannot enter pytest's 0700 directories.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log notice;
events {{ worker_connections 128; }}
http {{
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {site};
}}
""")
    return conf


def deploy_site(tmp: Path, host: str, guest_ip: str, full_chain: bool = False) -> tuple[Path, int, int, object]:
    """The TLS site `deploy/install.sh --tls-cert` renders, for a trustme certificate of `host`,
    with nginx listening on `guest_ip`: (nginx main config, http port, https port, the CA).
    `full_chain` puts the CA in the served chain too (Chromium matches the CA's key there)."""
    import sys

    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(host)
    leaf.private_key_pem.write_to_path(str(tmp / "key.pem"))
    (tmp / "key.pem").chmod(0o600)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + (ca.cert_pem.bytes() if full_chain else b"")
    (tmp / "cert.pem").write_bytes(chain if full_chain else leaf.cert_chain_pems[0].bytes())
    http_port = free_port("127.0.0.1", guest_ip)
    https_port = free_port(guest_ip)
    root = tmp / "root"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--root", str(root), "--no-hostapd",
                           "--guest-ip", guest_ip, "--portal-port", str(http_port), "--https-port", str(https_port),
                           "--tls-cert", str(tmp / "cert.pem"), "--tls-key", str(tmp / "key.pem"),
                           "--portal-host", host, "--privacy-contact", "privacy@caphe.vn"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return main_config(tmp / "nginx", root / "etc/nginx/conf.d/footfall.conf"), http_port, https_port, ca


def config_test(conf: Path) -> subprocess.CompletedProcess:
    """`nginx -t` on `conf` (it parses everything, loads the certificate and binds the listeners)."""
    return subprocess.run([nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf),
                           "-e", str(conf.parent / "logs" / "error.log")], capture_output=True, text=True, timeout=30)


@contextmanager
def running(conf: Path, listeners: list[tuple[str, int]], timeout: float = 15.0):
    """Run nginx in the foreground with `conf` until every listener accepts; stop it after."""
    proc = subprocess.Popen([nginx_binary(), "-p", str(conf.parent), "-c", str(conf),
                             "-e", str(conf.parent / "logs" / "error.log"), "-g", "daemon off;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        pending = list(listeners)
        while pending and time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(pending[0], timeout=1).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.05)
        if pending:
            log = (conf.parent / "logs" / "error.log")
            raise RuntimeError(f"nginx did not start ({proc.poll()}): "
                               f"{log.read_text() if log.exists() else ''}{proc.stdout.read() if proc.poll() is not None else ''}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful stop: workers finish, then the master exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
