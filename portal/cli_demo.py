"""`footfall demo`: the portal on localhost with the null gateway, an embedded SQLite file, an owner
account and, with --sample, 30 days of sample visitors; the jobs a dashboard needs run in a thread."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from portal.cli_common import _settings, appliance_process, config_option, serve
from portal.config import database_path


@click.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Port on 127.0.0.1; 0 picks a free one.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=".demo", show_default=True,
              help="Where the demo keeps its SQLite file and keys.")
@click.option("--sample", is_flag=True,
              help="First add 30 days of sample visitors (marked as sample data; added once).")
@config_option
def demo(port: int, data_dir: str, sample: bool, config: str | None) -> None:
    """Run the portal on localhost with the null gateway and an embedded SQLite file (no root)."""
    appliance_process()
    import socket

    import secrets

    from portal import accounts
    from portal.db import database, init_db
    from portal.models import Manager

    # The demo skips forced two-factor so a newcomer can look around; production keeps it on.
    # Codes go to this terminal (the console driver) unless the given config names real drivers.
    drivers = {} if config else {"email_driver": "console", "sms_driver": "console"}
    settings = _settings(config, data_dir=str(Path(data_dir).resolve()), gateway="null", listen_host="127.0.0.1",
                         panel_require_2fa=False, **drivers)
    init_db(database_path(settings))
    owner_password = None
    with database.connection_context():
        if not Manager.select().exists():
            owner_password = secrets.token_urlsafe(12)
            accounts.create_manager("owner", owner_password, "owner", actor="demo")
    if sample:
        _add_sample(settings)
    if port:
        probe = socket.socket()
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            click.echo(f"port {port} is busy; picking a free one", err=True)
            port = 0
        finally:
            probe.close()

    def configure(s, real_port):
        url = f"http://127.0.0.1:{real_port}"
        return _settings(None, **{**s.__dict__, "portal_url": url, "portal_hosts": f"localhost:{real_port}"})

    def announce(s, real_port):
        url = s.portal_url
        click.echo(f"Footfall demo: open {url}/")
        click.echo(f"  data in {database_path(s)} (null gateway: nothing on this machine's network changes)")
        if owner_password:
            click.echo(f"  manager panel: {url}/panel/  user: owner  password: {owner_password}  (shown once)")
        else:
            click.echo(f"  manager panel: {url}/panel/  (footfall manager reset-password owner --config ... if forgotten)")
        click.echo(f"  a phone's probe, as the gateway would pass it: "
                   f"curl -i -H 'Host: captive.apple.com' {url}/hotspot-detect.html")
        click.echo("  verification codes for visitors are printed here, as [message sms to ...] lines")
        click.echo(f"  sign-ins become visits and segments are brought up to date every {DEMO_JOBS_SECONDS} s here "
                   "(an appliance runs `footfall scheduler`)")
        click.echo("  Ctrl+C stops it.")
        sys.stdout.flush()

    import threading
    stop = threading.Event()
    threading.Thread(target=_demo_jobs, args=(settings, stop), name="demo-jobs", daemon=True).start()
    try:
        serve(settings, "127.0.0.1", port, configure, announce)
    finally:
        stop.set()


# The demo runs no scheduler process: the jobs a newcomer's dashboard needs from day one (sign-in
# visits, then segments) run in a thread of the demo instead.
DEMO_JOBS = ("signin_visits", "segments")
DEMO_JOBS_SECONDS = 60


def _demo_jobs(settings, stop, every: float = DEMO_JOBS_SECONDS) -> None:
    import logging

    from portal import store_settings
    from portal.db import database
    from portal.jobs import JOBS

    while not stop.wait(every):
        for name in DEMO_JOBS:
            try:
                with database.connection_context():
                    JOBS[name].run(store_settings.apply(settings))
            except Exception:  # noqa: BLE001 - the demo's pages go on; the next turn tries again
                logging.getLogger(__name__).exception("demo job %s failed", name)


def _add_sample(settings) -> None:
    """The demo's sample visitors, with the policies they consented to; once per data directory."""
    from portal import consent, segments, store_settings
    from portal.config import key_path
    from portal.db import database
    from portal.identity import Vault, load_or_create_keys
    from portal.sample import SAMPLE_DOMAIN, add_sample

    vault = Vault(load_or_create_keys(key_path(settings)))
    with database.connection_context():
        consent.ensure_policies(store_settings.apply(settings))  # the texts as the panel's settings render them
        segments.ensure_builtins()
        added = add_sample(vault, settings.store_id)
    if added is None:
        click.echo("  sample data already present: nothing added")
    else:
        click.echo(f"  sample data added: {added.leads} people (emails @{SAMPLE_DOMAIN}), {added.devices} devices, "
                   f"{added.visits} visits over 30 days")
