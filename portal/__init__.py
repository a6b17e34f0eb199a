"""Footfall's appliance: the captive portal (visitors) and, later, the manager panel.

`create_app` is imported lazily so that processes which only need the records (the collector,
the scheduler) do not load Flask and its extensions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Any = None, gateway: Any = None) -> "Flask":
    """Build the portal app; see portal.app.create_app."""
    from portal.app import create_app as factory

    return factory(config, gateway=gateway)


def restore_grants(gateway: Any) -> int:
    """Re-apply every unexpired authorization; see portal.app.restore_grants."""
    from portal.app import restore_grants as restore

    return restore(gateway)
