"""The visitors' blueprint: captive probes, splash, sign-in, privacy notice, my data, RFC 8908."""
from flask import Blueprint

bp = Blueprint("captive", __name__, template_folder="../templates")

from portal.captive.probes import probe_guard  # noqa: E402  (the guard lives beside the views it protects)
from portal.captive import views  # noqa: E402,F401  (registers the routes on bp)

__all__ = ["bp", "probe_guard"]
