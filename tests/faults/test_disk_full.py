"""A full SD card (issue 10), on a real 2.5 MB tmpfs (the migrations of a new database pass through about 1.5 MB of WAL): visitors still get online, their sign-ins wait
in the reserved journal and reach the database once there is room again; nothing is lost, nothing
doubled, and a visitor whose details could not be kept at all is told so."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import subprocess

import pytest

from portal import create_app
from portal.db import database
from portal.gateway.null import NullGateway
from portal.journal import SLOTS
from portal.models import Authorization, Consent, Lead
from portal.visitors import Client, SignInForm
from tests.conftest import PortalClient, require


@contextlib.contextmanager
def small_disk(path, size="2500k"):
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        database.close()
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path) -> int:
    """Write a filler file until the filesystem refuses: what a growing log or backup does."""
    written = 0
    with open(path / "filler", "wb", buffering=0) as fh:
        chunk = b"\0" * 4096
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
            written += len(chunk)
    return written


def sign_in(visitors, i):
    return visitors.sign_in(SignInForm(email=f"full{i}@example.com", terms=True, adult=True, marketing=frozenset({"marketing_email"})),
                            Client(f"10.3.{i // 250}.{i % 250 + 1}", f"02:00:00:03:{i // 256:02x}:{i % 256:02x}"))


def test_a_full_disk_lets_visitors_online_and_loses_no_sign_in(settings, tmp_path):
    with small_disk(tmp_path / "card") as card:
        settings = dataclasses.replace(settings, data_dir=str(card / "data"))
        gateway = NullGateway()
        app = create_app(settings, gateway=gateway)
        visitors = app.extensions["footfall"].visitors
        assert visitors.journal.available
        assert sign_in(visitors, 0).stored == "database"
        fill(card)

        outcomes = [sign_in(visitors, i) for i in range(1, 41)]
        assert all(o.ok for o in outcomes), [o.errors for o in outcomes if not o.ok]
        journaled = [i for i, o in zip(range(1, 41), outcomes) if o.stored == "journal"]
        assert journaled, "the database took every sign-in: the disk was not full"
        assert all(f"02:00:00:03:00:{i:02x}" in gateway.grants for i in range(1, 41)), "everyone is online"
        assert len(visitors.journal) == len(journaled)

        # Through HTTP: the visitor is online, and the online page says so.
        client = PortalClient(app.test_client(), ip="10.3.9.9")
        answer = client.sign_in(email="http@example.com")
        assert answer.status_code == 303 and answer.headers["Location"].startswith("/online")
        online = client.get("/online")
        assert online.status_code == 200
        assert client.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"}).status_code == 204

        # Room again (the owner deleted a file): the next sign-in brings the journal in.
        os.unlink(card / "filler")
        assert sign_in(visitors, 100).stored == "database"
        assert len(visitors.journal) == 0
        stored = {visitors.vault.blind_index("email", f"full{i}@example.com") for i in (0, *range(1, 41), 100)}
        stored.add(visitors.vault.blind_index("email", "http@example.com"))
        held = {lead.email_index for lead in Lead.select()}
        assert stored == held
        # Each consent once (terms for all, email marketing for all but the one who signed in over
        # HTTP without it), each with the time it was given.
        assert Consent.select().count() == 2 * len(held) - 1
        assert Authorization.select().count() == len(held)
        first = Consent.select().order_by(Consent.created_at).first()
        assert first.created_at <= Consent.select().order_by(Consent.id.desc()).first().created_at


def test_a_full_journal_tells_the_visitor_nothing_was_kept(settings, tmp_path):
    with small_disk(tmp_path / "card") as card:
        settings = dataclasses.replace(settings, data_dir=str(card / "data"))
        app = create_app(settings, gateway=NullGateway())
        visitors = app.extensions["footfall"].visitors
        fill(card)
        results = [sign_in(visitors, i) for i in range(SLOTS + 30)]
        assert all(r.ok for r in results)
        assert [r.stored for r in results].count("not_kept") >= 1
        assert len(visitors.journal) == SLOTS
        client = PortalClient(app.test_client(), ip="10.3.8.8")
        answer = client.sign_in(email="late@example.com")
        assert answer.status_code == 303
        page = client.get("/online").get_data(as_text=True)
        assert "nothing about you was kept" in page or "không có gì về bạn được giữ lại" in page


def test_the_journal_is_replayed_when_the_portal_starts_again(settings, tmp_path):
    with small_disk(tmp_path / "card") as card:
        settings = dataclasses.replace(settings, data_dir=str(card / "data"))
        app = create_app(settings, gateway=NullGateway())
        visitors = app.extensions["footfall"].visitors
        fill(card)
        kept = [i for i in range(20) if sign_in(visitors, i).stored == "journal"]
        assert kept
        database.close()
        os.unlink(card / "filler")
        again = create_app(settings, gateway=NullGateway())
        assert len(again.extensions["footfall"].visitors.journal) == 0
        with database.connection_context():
            assert Lead.select().count() == 20
            assert Consent.select().count() == 40
