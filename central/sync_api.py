"""The machines' endpoint: stores push signed batches here, and get signed answers."""
from __future__ import annotations

import json

from flask import Blueprint, Response, request

from central import ctx, now
from central.batch import Refused, read_batch
from central.ingest import apply, verify
from portal.core import wire

bp = Blueprint("sync", __name__)


def _answer(payload: dict, status: int, key: bytes | None = None) -> Response:
    """JSON, signed for the store once it is known (portal/core/wire.py): the store acts on nothing else."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    response = Response(body, status=status, mimetype="application/json")
    if key is not None:
        stamp = int(now())
        response.headers[wire.TIMESTAMP_HEADER] = str(stamp)
        response.headers[wire.SIGNATURE_HEADER] = wire.sign_answer(
            key, stamp, request.headers.get(wire.SIGNATURE_HEADER, ""), body)
    return response


@bp.post("/v1/ingest")
def ingest():
    c = ctx()
    body = request.get_data(cache=False)
    if request.headers.get("Content-Encoding", "") != "gzip":
        return _answer({"error": "send the batch gzip-compressed (Content-Encoding: gzip)"}, 415)
    try:
        store, key = verify(request.headers, body, c["vault"], c["settings"].sync_replay_window, now())
    except Refused as exc:
        return _answer({"error": exc.message}, exc.status)
    try:
        batch = read_batch(body)
        return _answer(apply(store, batch.events, c["vault"], after=batch.after), 200, key)
    except Refused as exc:
        return _answer({"error": exc.message}, exc.status, key)
