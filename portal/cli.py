"""The `footfall` command: a thin layer over the app factory and the domain."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from portal.cli_chain import central, sync
from portal.cli_docs import commands_command, privacy_record_command
from portal.cli_common import _settings, appliance_process, config_option, group_config_option
from portal.config import database_path, markdown_table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_config_option
def main() -> None:
    """Footfall: captive-portal WiFi marketing appliance."""


main.add_command(sync)
main.add_command(central)
main.add_command(commands_command)
main.add_command(privacy_record_command)


def _serve(settings, host: str, port: int, configure, announce) -> None:
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


@main.command()
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
        _serve(settings, "127.0.0.1", port, configure, announce)
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


@main.command()
@config_option
def portal(config: str | None) -> None:
    """Run the captive portal as configured (settings file and FOOTFALL_* variables)."""
    appliance_process()
    settings = _settings(config)
    _refuse_example_contacts(settings)

    def announce(s, real_port):
        click.echo(f"Footfall portal listening on {s.listen_host}:{real_port}, visitors sent to {s.portal_url}/")
        sys.stdout.flush()

    _serve(settings, settings.listen_host, settings.listen_port, lambda s, _port: s, announce)


def _refuse_example_contacts(settings) -> None:
    """A store's own gateway (not the demo's null one) must not tell visitors to write to an example
    address: the contacts in force (the settings file's, or the panel's over them) are checked."""
    from portal import store_settings
    from portal.db import database, init_db
    from portal.policy_texts import example_contacts

    if settings.gateway == "null":
        return
    init_db(database_path(settings))
    with database.connection_context():
        settings = store_settings.apply(settings)
    bad = example_contacts(settings)
    if bad:
        raise click.ClickException(
            f"{', '.join(f'{name} = {getattr(settings, name)!r}' for name in bad)} is an example address, and the privacy "
            "notice would tell visitors to write to it: set privacy_contact (and dpo_contact, the data protection "
            "contact) to the store's real ones in the settings file or FOOTFALL_PRIVACY_CONTACT; `footfall demo` keeps "
            "the example.")


@main.command()
@click.option("--config", "config", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON.")
def health(config: str | None, as_json: bool) -> None:
    """Disk, clock, backups, sync, waiting sign-ins and each process; exit status 1 on a problem."""
    import json

    from portal.db import init_db
    from portal.health_report import report

    settings = _settings(config)
    init_db(database_path(settings), migrate=False)
    result = report(settings)
    if as_json:
        click.echo(json.dumps(result, indent=1, sort_keys=True, default=str))
    else:
        disk = result["disk"]
        click.echo(f"disk: {disk['free_bytes'] // 2**20} MB free of {disk['total_bytes'] // 2**20} MB "
                   f"(floor {disk['floor_bytes'] // 2**20} MB); database {disk['database_bytes'] // 2**20} MB")
        c = result["clock"]
        click.echo(f"clock: {c['now']} UTC, {'synchronized' if c['synchronized'] else 'NOT synchronized'}, "
                   f"last good {c['last_good'] or '-'}")
        click.echo(f"backups: {result['backup']['count']}, newest {result['backup']['newest'] or '-'}")
        s = result["sync"]
        click.echo(f"sync: {'on' if s['configured'] else 'off'}; {s['pending_events']} events waiting; "
                   f"last delivered {s['last_delivered'] or '-'}")
        for name, p in result["processes"].items():
            db = p.get("database", {})
            click.echo(f"{name}: {'stopped' if p.get('stopped') else 'alive' if p.get('alive') else 'NOT ANSWERING'}, "
                       f"reported {p['age_seconds']} s ago; write transactions {db.get('transactions', 0)}, "
                       f"slow lock waits {db.get('slow_waits', 0)}, busy {db.get('busy', 0)}")
        click.echo("problems: " + ("none" if not result["problems"] else ""))
        for problem in result["problems"]:
            click.echo(f"  - {problem}")
    sys.exit(1 if result["problems"] else 0)


@main.command("init-db")
@config_option
def init_db_command(config: str | None) -> None:
    """Create the database or bring its schema up to date."""
    from portal.db import init_db, migrate_db

    settings = _settings(config)
    init_db(database_path(settings), migrate=False)
    applied = migrate_db()
    click.echo(f"{database_path(settings)}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))


@main.command()
@config_option
@click.option("--replay", "replay_file", type=click.Path(dir_okay=False), help="Process a pcap file instead of capturing.")
@click.option("--iface", help="Capture on this interface (overrides capture_interface).")
def collector(config: str | None, replay_file: str | None, iface: str | None) -> None:
    """Turn the guest LAN's packets into devices and visits (live, or --replay FILE.pcap)."""
    appliance_process()
    import json
    import threading

    from collector.capture import CaptureError
    from collector.pcap import PcapError
    from collector.service import replay, run_live, stop_on_signals

    settings = _settings(config, capture_interface=iface)
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        if replay_file:
            stats = replay(settings, replay_file, stop)
        else:
            stats = run_live(settings, stop, announce=lambda line: click.echo(line) or sys.stdout.flush())
    except (PcapError, CaptureError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(stats, sort_keys=True))


@main.command()
@config_option
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Look back this many days.")
@click.option("--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="List the most frequent visitors.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the figures per local day as JSON (visits, passers-by, devices, dwell) instead.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="With --json: the first day (default: --days back).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="With --json: the last day (default: today).")
def visits(config: str | None, days: int, top: int, as_json: bool, since, until) -> None:
    """Who comes back: visits, recency and dwell per person (lead) or anonymous device; with
    --json, the aggregate figures per day for any range of dates."""
    import datetime
    import json

    from portal.db import database, init_db
    from portal.visits import daily_figures, summarize, visitor_stats

    settings = _settings(config)
    if (since or until) and not as_json:
        raise click.UsageError("--since and --until go with --json")
    last = until.date() if until else datetime.date.today()
    first = since.date() if since else last - datetime.timedelta(days=days - 1)
    if last < first:
        raise click.BadParameter("the range ends before it starts", param_hint="--until")
    if (last - first).days >= 3660:
        raise click.BadParameter("at most 3660 days at a time", param_hint="--since")
    init_db(database_path(settings))
    if as_json:
        with database.connection_context():
            click.echo(json.dumps(daily_figures(first, last), indent=1))
        return
    with database.connection_context():
        stats = visitor_stats(days)
    s = summarize(stats, days)
    click.echo(f"Last {days} days: {s.visits} visits; {s.people} known people; {s.anonymous_devices} anonymous devices "
               f"({s.anonymous_randomized} with private addresses); {s.new} new and {s.returning} returning; "
               f"median dwell {s.median_dwell_minutes if s.median_dwell_minutes is not None else '-'} min.")
    click.echo(s.note)
    for row in stats[:top]:
        device = row.subject[7:] if row.subject.startswith("device:anon-") else "(not followed: MAC not shown)"
        who = f"person {row.lead_uid[:8]} ({row.devices} device{'s' if row.devices > 1 else ''})" if row.lead_uid \
            else f"device {device}{' (private address: estimate)' if row.randomized else ''}"
        click.echo(f"  {who}: {row.visits} visits, last {row.recency_days:.1f} days ago, "
                   f"median dwell {row.median_dwell_minutes:.0f} min")


@main.command()
@config_option
def scheduler(config: str | None) -> None:
    """Run the scheduled jobs (segments every 15 minutes, retention purge daily) in this one process."""
    appliance_process()
    import logging

    from portal.jobs import JOBS, run_scheduler

    settings = _settings(config)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"scheduler running: {', '.join(JOBS)}")
    sys.stdout.flush()
    run_scheduler(settings)


@main.group()
@group_config_option
def jobs() -> None:
    """Run one scheduled job now."""


@jobs.command("run")
@click.argument("name")
@config_option
def jobs_run(name: str, config: str | None) -> None:
    """Run job NAME now and print what it did."""
    import json

    from portal.jobs import JOBS, run_job

    if name not in JOBS:
        raise click.ClickException(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    click.echo(json.dumps(run_job(name, _settings(config)), sort_keys=True))


@main.group()
@group_config_option
def manager() -> None:
    """Manager accounts of the panel."""


def _manager_password(prompt: bool, stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@manager.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["owner", "manager", "analyst"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_option
def manager_add(username: str, role: str, password_stdin: bool, config: str | None) -> None:
    """Create a panel account."""
    from portal import accounts
    from portal.db import database, init_db

    settings = _settings(config)
    init_db(database_path(settings))
    password = _manager_password(True, password_stdin)
    try:
        with database.connection_context():
            accounts.create_manager(username, password, role, actor="cli")
    except accounts.AccountError as exc:
        raise click.ClickException(ACCOUNT_ERRORS.get(exc.code, exc.code)) from None
    click.echo(f"created {role} {username.strip().lower()}")


@manager.command("reset-password")
@click.argument("username")
@click.option("--reset-2fa", is_flag=True, help="Also remove two-factor enrolment (a lost phone).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_option
def manager_reset(username: str, reset_2fa: bool, password_stdin: bool, config: str | None) -> None:
    """Set a new password (and unlock the account)."""
    from portal import accounts
    from portal.db import database, init_db
    from portal.models import Manager

    settings = _settings(config)
    init_db(database_path(settings))
    with database.connection_context():
        account = Manager.get_or_none(Manager.username == username.strip().lower())
        if account is None:
            raise click.ClickException(f"no account {username!r}")
        try:
            accounts.set_password(account, _manager_password(True, password_stdin), actor="cli", reset_2fa=reset_2fa)
        except accounts.AccountError as exc:
            raise click.ClickException(ACCOUNT_ERRORS.get(exc.code, exc.code)) from None
    click.echo(f"password of {account.username} reset" + (", two-factor removed" if reset_2fa else ""))


ACCOUNT_ERRORS = {
    "username_invalid": "usernames are 3-32 characters: lower-case letters, digits, '.', '_' or '-'",
    "username_taken": "that username is taken",
    "role_invalid": "role must be owner, manager or analyst",
    "password_short": "passwords need at least 12 characters",
    "password_long": "passwords are at most 256 characters",
    "password_has_username": "the password must not contain the username",
}


@main.command("gateway-rules")
@config_option
def gateway_rules(config: str | None) -> None:
    """Print the nftables ruleset of the guest gate, with no one authorized (for boot, before the portal)."""
    from portal.gateway import tls_ports
    from portal.gateway.isolation import Isolation
    from portal.gateway.nftables import ruleset

    settings = _settings(config)
    isolation = Isolation.from_settings(settings)
    click.echo(ruleset(settings.guest_interface, settings.listen_port, store=isolation.store_networks(),
                       allowed=isolation.allowed, tls_ports=tls_ports(settings)), nl=False)


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table the README carries.")
@config_option
def settings_command(markdown: bool, config: str | None) -> None:
    """Show every setting (name, value in force, meaning)."""
    if markdown:
        click.echo(markdown_table())
        return
    settings = _settings(config)
    for name, value in settings.__dict__.items():
        click.echo(f"{name} = {value!r}")
