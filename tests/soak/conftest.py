"""The soak tests speak to a real central store: its PostgreSQL fixtures, shared."""
from tests.central.conftest import central_settings, schema  # noqa: F401
