"""`footfall sync ...` (this store and the chain) and `footfall central ...` (the chain's store)."""
from __future__ import annotations

import sys

import click

from portal.cli_common import _settings, config_option, group_config_option, read_private_file, write_private_file
from portal.config import database_path

@click.group()
@group_config_option
def sync() -> None:
    """This store and the chain's central store."""


@sync.command("now")
@config_option
def sync_now(config: str | None) -> None:
    """Push the outbox now (what the scheduler does every sync_interval_seconds)."""
    import json

    from portal.jobs import run_job

    click.echo(json.dumps(run_job("push", _settings(config)), sort_keys=True))


@sync.command("status")
@config_option
def sync_status(config: str | None) -> None:
    """Events waiting, and the state of the last attempts."""
    import json

    from portal import sync as syncing
    from portal.config import key_path
    from portal.db import database, init_db
    from portal.identity import load_or_create_keys

    settings = _settings(config)
    init_db(database_path(settings))
    keys = load_or_create_keys(key_path(settings))
    with database.connection_context():
        click.echo(json.dumps({"central_url": settings.central_url, "store_id": keys.store_id or None,
                               "pending_events": syncing.pending(), "state": syncing._state()}, sort_keys=True))


@sync.command("enroll")
@click.option("--store-id", required=True, help="As `footfall central add-store` printed it.")
@click.option("--keys-file", type=click.Path(dir_okay=False),
              help="The keys add-store wrote (mode 0600); without it they are read from standard input.")
@config_option
def sync_enroll(store_id: str, keys_file: str | None, config: str | None) -> None:
    """Join the chain: keep the store key, adopt the chain's index key and re-index every lead.
    The keys (store_key=..., index_key=...) come from a 0600 file or standard input, never from
    the command line (process list, shell history). Restart the portal afterwards."""
    from portal import sync as syncing
    from portal.config import key_path
    from portal.db import database, init_db
    from portal.identity import Vault, load_or_create_keys

    settings = _settings(config)  # a wrong config file is refused before any key is asked for
    text = read_private_file(keys_file) if keys_file else _keys_from_stdin()
    try:
        store, index = syncing.parse_enrollment(text)
    except syncing.SyncError as exc:
        raise click.ClickException(str(exc)) from None
    init_db(database_path(settings))
    keys = load_or_create_keys(key_path(settings))
    with database.connection_context():
        count = syncing.enroll(key_path(settings), keys, Vault(keys), store_id.strip(), store, index)
    click.echo(f"enrolled as {store_id.strip()}; {count} leads re-indexed with the chain's key; restart the portal")


def _keys_from_stdin() -> str:
    if sys.stdin.isatty():  # typed or pasted: not echoed
        return "\n".join(f"{name}={click.prompt(name, hide_input=True)}" for name in ("store_key", "index_key"))
    return sys.stdin.read(4096)


@click.group(invoke_without_command=True)
@group_config_option
@click.pass_context
def central(ctx: click.Context) -> None:
    """The chain's central store (PostgreSQL); alone, it serves the API."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(central_serve)


def _central(config: str | None):
    from central import create_app

    settings = _settings(config)
    return settings, create_app(settings)


@central.command("serve")
@config_option
@click.option("--port", type=int, default=None, help="Override central_listen_port (0: a free one).")
def central_serve(config: str | None, port: int | None) -> None:
    """Serve the central API with gunicorn (central_workers processes)."""
    import socket

    from gunicorn.app.base import BaseApplication

    from central.db import database

    settings, _ = _central(config)  # migrate once, before the workers start
    # Workers are forked from this process: none may inherit a pooled PostgreSQL connection
    # (two workers on one socket corrupt each other's queries).
    database.close_all()
    host, port = settings.central_listen_host, settings.central_listen_port if port is None else port
    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", settings.central_workers)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)  # on SIGTERM: requests in flight get this long (unit: TimeoutStopSec=20s)
            self.cfg.set("limit_request_field_size", 8190)
            self.cfg.set("accesslog", None)
            self.cfg.set("when_ready", lambda server: click.echo(f"central listening on http://{host}:{port}", nl=True)
                         or sys.stdout.flush())

        def load(self):
            from central import create_app
            return create_app(settings)

    Server().run()


@central.command("add-store")
@click.argument("store_id")
@click.option("--name", required=True)
@click.option("--keys-file", type=click.Path(dir_okay=False),
              help="Write the store's keys to this new file (mode 0600) instead of standard output.")
@config_option
def central_add_store(store_id: str, name: str, keys_file: str | None, config: str | None) -> None:
    """Enroll a store; its keys (shown once) go to a 0600 file or standard output, for
    `footfall sync enroll` on the store's appliance."""
    import base64
    import re

    from central import add_store
    from central.db import database

    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", store_id):
        raise click.ClickException("store ids are 1-64 letters, digits, '_' or '-'")
    _, app = _central(config)
    rt = app.extensions["central"]
    with database.connection_context():
        try:
            key = add_store(store_id, name[:120], rt["vault"])
        except Exception as exc:
            raise click.ClickException(f"cannot add {store_id}: {exc.__class__.__name__}") from None
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    keys = f"store_key={b64(key)}\nindex_key={b64(rt['keys'].index)}\n"
    how = f"footfall sync enroll --store-id {store_id} --keys-file FILE (or the two lines on its standard input)"
    if keys_file:
        write_private_file(keys_file, keys)
        click.echo(f"keys written to {keys_file} (0600); move it to the store's appliance, then run: {how}", err=True)
    else:
        click.echo(keys, nl=False)
        click.echo(f"on the store's appliance, keep these two lines in a 0600 file, then run: {how}", err=True)


@central.command("token")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True,
              type=click.Choice(["people:read", "exports:read", "erase:write", "stores:read"]))
@click.option("--revoke", is_flag=True, help="Revoke every live token of that name instead.")
@config_option
def central_token(name: str, scopes: tuple[str, ...], revoke: bool, config: str | None) -> None:
    """Create a read API token (printed once; only its hash is kept), or --revoke one."""
    from central import add_token
    from central.db import database
    from central.models import ApiToken, utcnow

    _central(config)
    with database.connection_context():
        if revoke:
            count = ApiToken.update(revoked_at=utcnow()).where(
                (ApiToken.name == name) & ApiToken.revoked_at.is_null()).execute()
            if not count:
                raise click.ClickException(f"no live token named {name!r}")
            click.echo(f"revoked {count} token(s) named {name}")
            return
        if not scopes:
            raise click.ClickException("give at least one --scope")
        click.echo(add_token(name[:120], list(scopes)))


@central.command("tokens")
@config_option
def central_tokens(config: str | None) -> None:
    """List the API tokens (names, scopes, state; never the tokens)."""
    from central.db import database
    from central.models import ApiToken

    _central(config)
    with database.connection_context():
        for token in ApiToken.select().order_by(ApiToken.id):
            state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "live"
            click.echo(f"{token.name}\t{token.scopes}\t{state}\tcreated {token.created_at:%Y-%m-%d}")


@central.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count the people the purge would erase.")
@config_option
def central_purge(dry_run: bool, config: str | None) -> None:
    """Retention: erase the details, devices and visits of people not seen at any store within
    central_retention_days (the consent log stays as proof), and drop the months of visits entirely
    older than that (whole partitions). systemd/footfall-central-purge.timer runs it daily."""
    import json

    from psycopg2 import errors

    from central import visits
    from central.db import database
    from central.models import utcnow
    from central.people import purge_person, stale_people

    settings, _ = _central(config)
    now = utcnow()
    with database.connection_context():
        with database.atomic():
            cur = database.cursor()
            stale = stale_people(cur, settings.central_retention_days, now)
            if not dry_run:
                for person in stale:
                    purge_person(cur, person, now)
        try:
            months = visits.purge_months(database, now, settings.central_retention_days, dry_run)
        except errors.LockNotAvailable:
            raise click.ClickException(f"people purged, but the visit table stayed busy for {visits.LOCK_WAIT} s: "
                                       "no month dropped this time (run the purge again)") from None
    click.echo(json.dumps({"retention_days": settings.central_retention_days, "people": len(stale),
                           "dry_run": dry_run, "visits": months}))


@central.group("webhook")
@group_config_option
def central_webhook() -> None:
    """The chain's webhooks (Standard Webhooks) to a CRM: endpoints and delivery."""


@central_webhook.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, help="An event type to send (repeat); none means every type.")
@config_option
def central_webhook_add(url: str, events: tuple[str, ...], config: str | None) -> None:
    """Add an endpoint (https only); its signing secret is printed once, on standard output."""
    from central import webhooks
    from central.db import database

    settings, app = _central(config)
    with database.connection_context():
        try:
            endpoint, secret = webhooks.add_endpoint(url.strip(), list(events), app.extensions["central"]["vault"],
                                                     settings.webhook_allow_loopback)
        except webhooks.WebhookError as exc:
            raise click.ClickException(f"refused: {exc.args[0]}") from None
    click.echo(secret)
    click.echo(f"endpoint {endpoint.uid} -> {endpoint.url} ({', '.join(endpoint.events)}); "
               "the secret above is shown only now: give it to the CRM", err=True)


@central_webhook.command("list")
@config_option
def central_webhook_list(config: str | None) -> None:
    """The endpoints (never their secrets), what waits, and the messages that failed for good."""
    from central import webhooks
    from central.db import database
    from portal.webhooks import wire

    _central(config)
    with database.connection_context():
        for e in webhooks.endpoints():
            click.echo(f"{e.uid}\t{e.url}\t{','.join(e.events)}\t{'on' if e.enabled else 'off'}")
        counts = webhooks.counts()
        click.echo(f"# pending {counts['pending']}, delivered {counts['delivered']}, dead {counts['dead']}")
        for msg_id, kind, endpoint, attempts, error in webhooks.dead_letters():
            click.echo(f"# dead {msg_id}\t{kind}\t{endpoint}\t{attempts} attempts\t{wire.printable(error or '')}")


@central_webhook.command("remove")
@click.argument("uid")
@config_option
def central_webhook_remove(uid: str, config: str | None) -> None:
    """Remove an endpoint and the messages waiting for it."""
    from central import webhooks
    from central.db import database

    _central(config)
    with database.connection_context():
        if not webhooks.remove_endpoint(uid):
            raise click.ClickException(f"no endpoint {uid!r} (see `footfall central webhook list`)")
    click.echo(f"removed {uid}")


@central_webhook.command("resend")
@click.argument("msg_id")
@config_option
def central_webhook_resend(msg_id: str, config: str | None) -> None:
    """Put a message that failed for good back in the queue."""
    from central import webhooks
    from central.db import database

    _central(config)
    with database.connection_context():
        if not webhooks.send_again(msg_id):
            raise click.ClickException(f"no dead message {msg_id!r}")
    click.echo(f"{msg_id} queued again")


@central_webhook.command("deliver")
@click.option("--every", type=click.IntRange(0, 3600), default=0, help="Keep delivering every N seconds (0: once).")
@config_option
def central_webhook_deliver(every: int, config: str | None) -> None:
    """Send the messages that are due (once, or every N seconds until SIGTERM)."""
    import json
    import signal
    import threading

    from central import webhooks
    from central.db import database

    settings, app = _central(config)
    rt = app.extensions["central"]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while True:
        with database.connection_context():
            result = webhooks.deliver_due(rt["vault"], webhooks.person_key(rt["keys"]),
                                          float(settings.webhook_timeout_seconds), settings.webhook_max_attempts,
                                          settings.webhook_allow_loopback)
        click.echo(json.dumps(result, sort_keys=True))
        if not every or stop.wait(every):
            return
