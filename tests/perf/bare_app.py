"""The baseline: a bare Flask app that answers every request with the same redirect, under the
same server and settings as the portal. Run as a process; prints the port it listens on."""
import logging
import sys

from flask import Flask, Response
from waitress import create_server

LOCATION = "http://portal.test:8080/?continue=http%3A%2F%2Fconnectivitycheck.gstatic.com%2Fgenerate_204"


def make_app() -> Flask:
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""})
    @app.route("/<path:path>")
    def redirect_everything(path):
        return Response("", status=302, headers={"Location": LOCATION, "Cache-Control": "no-store"})

    return app


if __name__ == "__main__":
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as the portal does
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    server = create_server(make_app(), host="127.0.0.1", port=0, threads=threads, ident="footfall")
    print(f"bare listening on 127.0.0.1:{server.effective_port}", flush=True)
    server.run()
