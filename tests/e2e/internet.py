"""The "internet" of the namespace tests: answers like the real probe hosts, logs every hit.

Run inside the internet namespace:  python internet.py LOGFILE ADDR [ADDR...]
HTTP on port 80 of each address; a UDP "outside resolver" on port 53 that logs queries.
"""
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    "/generate_204": (204, b""),
    "/hotspot-detect.html": (200, b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/connecttest.txt": (200, b"Microsoft Connect Test"),
    "/success.txt": (200, b"success\n"),
}
LOCK = threading.Lock()


def log(logfile, **entry):
    with LOCK, open(logfile, "a") as fh:
        fh.write(json.dumps(entry) + "\n")


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_http(logfile, address):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = ANSWERS.get(self.path.split("?")[0], (200, b"the internet"))
            log(logfile, kind="http", client=self.client_address[0], host=self.headers.get("Host"), path=self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    cls = V6Server if ":" in address else ThreadingHTTPServer
    cls.daemon_threads = True
    cls((address, 80), Handler).serve_forever()


def serve_dns(logfile, address):
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(4096)
        log(logfile, kind="dns", client=peer[0])
        sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)  # echo the query back as an answer


if __name__ == "__main__":
    logfile, addresses = sys.argv[1], sys.argv[2:]
    for address in addresses:
        threading.Thread(target=serve_http, args=(logfile, address), daemon=True).start()
        threading.Thread(target=serve_dns, args=(logfile, address), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
