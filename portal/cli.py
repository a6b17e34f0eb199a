"""The `footfall` command: a thin layer over the app factory and the domain."""
from __future__ import annotations

import sys

import click

from portal.cli_chain import central, sync
from portal.cli_docs import commands_command, privacy_record_command
from portal.cli_common import _settings, appliance_process, config_option, group_config_option, serve
from portal.cli_demo import demo
from portal.config import database_path, markdown_table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_config_option
def main() -> None:
    """Footfall: captive-portal WiFi marketing appliance."""


main.add_command(sync)
main.add_command(central)
main.add_command(commands_command)
main.add_command(privacy_record_command)
main.add_command(demo)


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

    serve(settings, settings.listen_host, settings.listen_port, lambda s, _port: s, announce)


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
    """Create the database or bring its schema up to date (after a restore from backup: and redo
    the erasures and withdrawals made since the backup, from the erasure ledger)."""
    from portal import erasure_ledger
    from portal.db import init_db, migrate_db

    settings = _settings(config)
    init_db(database_path(settings), migrate=False)
    applied = migrate_db()
    click.echo(f"{database_path(settings)}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    redone = erasure_ledger.replay()
    if any(redone.values()):
        click.echo("redone from the erasure ledger (made since the backup): "
                   f"{redone['erased']} people erased, {redone['devices']} devices erased, {redone['withdrawn']} consents withdrawn")


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
    """Run the scheduled jobs (segments every 15 minutes, retention purge daily): the timers in this
    one process, each run in a child process (`footfall jobs run NAME`), one at a time."""
    appliance_process()
    from portal import scheduler as timers

    sys.exit(timers.serve(_settings(config), _config_path(config)))


def _config_path(config: str | None) -> str | None:
    """The settings file named on this command line (here or on a group above), if any."""
    import os

    from portal.cli_common import given_config
    path = config or given_config()
    return os.path.abspath(path) if path else None


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
    click.echo(json.dumps(_in_a_job_process(config, lambda settings: run_job(name, settings)), sort_keys=True))


@jobs.command("prepare")
@config_option
def jobs_prepare(config: str | None) -> None:
    """Check the database (a damaged one is restored from a backup) and redo the erasure ledger:
    what `footfall scheduler` runs before its first job."""
    import json

    from portal.jobs import prepare

    click.echo(json.dumps(_in_a_job_process(config, prepare), sort_keys=True))


def _in_a_job_process(config: str | None, work):
    """A job's own process: as the scheduler's child, what the scheduler process did for it before."""
    import logging

    from portal import clock

    appliance_process()
    settings = _settings(config)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    clock.load_floor(settings.data_dir)  # nothing it writes dated before the last good time
    return work(settings)


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
