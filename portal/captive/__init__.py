"""The visitors' blueprint: captive probes, splash, sign-in, privacy notice, my data, RFC 8908."""
from flask import Blueprint

bp = Blueprint("captive", __name__, template_folder="../templates")

from portal.captive import views  # noqa: E402,F401  (registers the routes on bp)
from portal.captive.probes import CaptiveProbes  # noqa: E402

__all__ = ["bp", "CaptiveProbes"]
