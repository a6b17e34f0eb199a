"""What every `footfall` command shares."""
from __future__ import annotations

import click

from portal.config import ConfigError, load_settings


def _settings(config: str | None, **overrides):
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
