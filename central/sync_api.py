"""The machines' endpoint: stores push signed batches here."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from central import ctx, now
from central.ingest import Refused, apply, inflate, parse_events, verify

bp = Blueprint("sync", __name__)


@bp.post("/v1/ingest")
def ingest():
    c = ctx()
    body = request.get_data(cache=False)
    try:
        if request.headers.get("Content-Encoding", "") != "gzip":
            raise Refused(415, "send the batch gzip-compressed (Content-Encoding: gzip)")
        store = verify(request.headers, body, c["vault"], c["settings"].sync_replay_window, now())
        events = parse_events(inflate(body))
    except Refused as exc:
        return jsonify(error=exc.message), exc.status
    return jsonify(apply(store, events, c["vault"]))
