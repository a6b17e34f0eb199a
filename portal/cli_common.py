"""What every `footfall` command shares."""
from __future__ import annotations

import os
import stat

import click

from portal.config import ConfigError, load_settings
from portal.process import appliance_process, few_malloc_arenas  # noqa: F401 (the commands' import)

_CONFIG = "footfall.config"  # click's ctx.meta is shared by a command and the groups above it


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[_CONFIG] = value
    return value


def config_option(f):
    """`--config FILE` on a command or a group; a group's applies to the commands under it
    (`footfall central --config FILE`, `footfall --config FILE visits`), a command's own wins."""
    return click.option("--config", "config", type=click.Path(dir_okay=False), callback=_remember_config,
                        help="TOML settings file (default: $FOOTFALL_CONFIG).")(f)


def group_config_option(f):
    """config_option for a group: remembered for its commands, not passed to the group itself."""
    return click.option("--config", "config", type=click.Path(dir_okay=False), callback=_remember_config,
                        expose_value=False,
                        help="TOML settings file for the commands below (default: $FOOTFALL_CONFIG).")(f)


def given_config() -> str | None:
    """The --config given to a group above the running command, if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_CONFIG) if ctx is not None else None


def _settings(config: str | None, **overrides):
    if config is None:
        ctx = click.get_current_context(silent=True)
        config = ctx.meta.get(_CONFIG) if ctx is not None else None
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def read_private_file(path: str, limit: int = 4096) -> str:
    """A secret from a file only its owner can read: refused when group or others may (chmod 600)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise click.ClickException(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())  # of what was opened, not of a name swapped meanwhile
        if not stat.S_ISREG(info.st_mode):
            raise click.ClickException(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise click.ClickException(f"{path} is readable by group or others (mode {info.st_mode & 0o777:o}): "
                                       f"chmod 600 {path}, and consider its keys seen")
        return handle.read(limit).decode("utf-8", "replace")


def write_private_file(path: str, text: str) -> None:
    """A new file, mode 0600 from its creation (never an existing one overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise click.ClickException(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def serve(settings, host: str, port: int, configure, announce) -> None:
    """Serve the portal with waitress: one process, a thread pool, bounded request sizes.

    The socket is bound first (so the demo knows its port), then the app is built (database,
    gateway rules), and only then is the address announced: whoever waits for that line finds
    the portal, and the gate, ready."""
    from urllib.parse import urlsplit

    from waitress import create_server

    from portal import create_app
    from portal.health import Heartbeat, http_alive
    from portal.shutdown import flush_app, serve_until_stopped

    holder = {}
    # Behind the TLS front (nginx), believe its X-Forwarded-For/Proto, and only from its address:
    # the guest's own address for the gateway and panel_networks, https for URLs and CSRF checks.
    proxy = dict(trusted_proxy=settings.trusted_proxy, trusted_proxy_count=1,
                 trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto"}) if settings.trusted_proxy else {}

    def dispatch(environ, start_response):
        return holder["app"](environ, start_response)

    server = create_server(dispatch, host=host, port=port, threads=settings.threads,
                           max_request_header_size=settings.max_header_bytes,
                           max_request_body_size=settings.max_body_bytes,
                           # Without a trusted proxy, forwarding headers stay visible: the panel
                           # fence refuses a request a front forwarded (portal/panel/fence.py).
                           clear_untrusted_proxy_headers=bool(settings.trusted_proxy), ident="footfall", **proxy)
    real_port = server.effective_port
    settings = configure(settings, real_port)
    holder["app"] = create_app(settings)
    heartbeat = Heartbeat("portal", settings.data_dir,
                          alive=lambda: http_alive(host, real_port, urlsplit(settings.portal_url).netloc))
    announce(settings, real_port)
    heartbeat.ready()
    try:
        # SIGTERM (systemd) or Ctrl+C: stop accepting, finish the requests in flight, flush, exit 0.
        stats = serve_until_stopped(server, on_stopped=lambda: flush_app(holder["app"]))
    finally:
        heartbeat.stop()
    click.echo(f"Footfall portal stopped ({'drained' if stats['drained'] else str(stats['left']) + ' connection(s) cut'})")
