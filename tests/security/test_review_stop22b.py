"""Review of stop 22 (second pass): the erasure ledger attacked as a careless operator and a bad
start, the panel's refused page as a stranger, the reset cap. Real SQLite files, the app's own views."""
from __future__ import annotations

import json
import os

import pytest

from portal import consent, erasure_ledger, privacy
from portal.db import database
from portal.models import Consent, Device, Lead, LedgerMark


@pytest.fixture
def settings(settings):
    """Two-factor optional, as tests/panel has it (the panel's pages without the enrolment step)."""
    import dataclasses
    return dataclasses.replace(settings, panel_require_2fa=False)


class RolledBack(Exception):
    pass


def signed_in_lead(make_client, ip, email, **kwargs):
    make_client(ip).sign_in(email=email, **kwargs)
    with database.connection_context():
        return Lead.select().order_by(Lead.id.desc()).get()


def append_line(entry):
    with open(erasure_ledger.path(), "a", encoding="utf-8") as ledger:
        ledger.write((entry if isinstance(entry, str) else json.dumps(entry)) + "\n")


# -- 1. the ledger: a database that was NOT restored loses nothing to a replay -------------------

def test_a_withdrawal_rolled_back_then_granted_again_is_not_withdrawn_at_the_next_start(app, make_client):
    """The ledger line is written inside the transaction, the file append is not rolled back with
    it: the database's mark stays below the line. The person then grants the purpose (again, or
    for the first time since the failure); the next start must not withdraw that grant."""
    lead = signed_in_lead(make_client, "10.0.0.31", "an@example.com", marketing=["marketing_email"])
    where = consent.Where("store-1", None, None, "my_data")
    with database.connection_context():
        with pytest.raises(RolledBack):
            with database.atomic():
                consent.record(lead, "marketing_email", False, where)
                raise RolledBack  # e.g. the outbox write or a later step failed
        assert "marketing_email" in consent.granted_purposes(lead)  # the withdrawal never happened
        consent.record(lead, "marketing_email", True, where)
    erasure_ledger.replay()
    with database.connection_context():
        assert "marketing_email" in consent.granted_purposes(Lead.get_by_id(lead.id))


def test_an_erasure_rolled_back_then_a_new_sign_in_is_not_erased_at_the_next_start(app, make_client, gateway):
    lead = signed_in_lead(make_client, "10.0.0.32", "binh@example.com", marketing=["marketing_email"])
    with database.connection_context():
        devices = list(Device.select().where(Device.lead == lead))
        with pytest.raises(RolledBack):
            with database.atomic():
                privacy.erase_person(lead, devices, gateway, "store-1", "guest")
                raise RolledBack
        assert Lead.get_by_id(lead.id).erased_at is None
        # They come back: a grant, their phone seen again.
        consent.record(lead, "marketing_email", True, consent.Where("store-1", devices[0].mac, "10.0.0.32", "portal"))
        from portal.models import utcnow
        Device.update(last_seen=utcnow()).where(Device.id == devices[0].id).execute()
    erasure_ledger.replay()
    with database.connection_context():
        assert Lead.get_by_id(lead.id).erased_at is None
        assert Device.select().where(Device.id.in_([d.id for d in devices])).count() == len(devices)


def test_a_device_row_id_given_again_after_an_erasure_is_not_erased_by_a_stale_line(app, make_client):
    """A line above the mark (rolled back, or any stale line) names device row ids; SQLite gives a
    deleted last row id to the next device. A device seen after the line was written is not the
    one the line meant."""
    lead = signed_in_lead(make_client, "10.0.0.33", "chi@example.com")
    with database.connection_context():
        [device] = Device.select().where(Device.lead == lead)
        mark = LedgerMark.select(LedgerMark.seq).scalar() or 0
    append_line({"seq": mark + 1, "kind": "erase", "store": "store-1", "lead": None, "devices": [device.id]})
    with database.connection_context():
        from portal.models import utcnow
        Device.update(last_seen=utcnow()).where(Device.id == device.id).execute()
    erasure_ledger.replay()
    with database.connection_context():
        assert Device.select().where(Device.id == device.id).exists()


# -- a bad line never stops the appliance from starting --------------------------------------------

@pytest.mark.parametrize("line", [
    {"seq": 10 ** 30, "kind": "withdraw", "store": "s", "lead": "x", "purpose": "marketing_email"},  # past SQLite's integers
    {"seq": 2 ** 62},  # no kind
    {"seq": 2 ** 62, "kind": "erase", "devices": None},
    {"seq": 2 ** 62, "kind": "erase", "devices": ["not-a-number"]},
    {"seq": 2 ** 62, "kind": "erase", "devices": 7},
    [1, 2, 3],
    "nul\u0000",
])
def test_a_bad_ledger_line_is_skipped_and_the_start_goes_on(app, make_client, line):
    lead = signed_in_lead(make_client, "10.0.0.34", "dung@example.com", marketing=["marketing_email"])
    append_line(line)
    erasure_ledger.replay()  # no exception: the portal, the collector and the scheduler all call it at start
    with database.connection_context():
        assert Lead.get_by_id(lead.id).erased_at is None
        assert "marketing_email" in consent.granted_purposes(Lead.get_by_id(lead.id))
        assert (LedgerMark.select(LedgerMark.seq).scalar() or 0) < 2 ** 63


def test_a_negative_seq_line_is_never_applied(app, make_client):
    lead = signed_in_lead(make_client, "10.0.0.35", "em@example.com")
    append_line({"seq": -5, "kind": "erase", "store": "s", "lead": lead.uid, "devices": []})
    erasure_ledger.replay()
    with database.connection_context():
        assert Lead.get_by_id(lead.id).erased_at is None


def test_a_ledger_from_another_database_erases_nothing_here(app, make_client):
    """A ledger copied from another appliance (or another database's in the same directory) named
    this database's device rows by their small integer ids; each line now names its database."""
    lead = signed_in_lead(make_client, "10.0.0.36", "giang@example.com")
    with database.connection_context():
        [device] = Device.select().where(Device.lead == lead)
        mark = LedgerMark.select(LedgerMark.seq).scalar() or 0
    # A line as another appliance writes it: its own lead uid, row ids that mean other devices there.
    from portal import clock
    with database.connection_context():
        here = database.execute_sql("PRAGMA application_id").fetchone()[0]
    assert here != 0
    append_line({"seq": max(mark + 1, clock.seq_now()), "kind": "erase", "store": "another-store", "lead": "someone-else",
                 "db": here + 1,
                 "devices": [device.id]})
    # Written "before" this device was last seen here would not help: an old line of another box.
    with database.connection_context():
        Device.update(last_seen=Device.first_seen).where(Device.id == device.id).execute()
    erasure_ledger.replay()
    with database.connection_context():
        assert Device.select().where(Device.id == device.id).exists()


def test_the_ledger_stays_private_after_a_trim(app, make_client, gateway):
    make_client("10.0.0.37").sign_in(email="ha@example.com", marketing=["marketing_email"])
    with database.connection_context():
        lead = Lead.select().order_by(Lead.id.desc()).get()
        privacy.erase_person(lead, [], gateway, "store-1", "guest")
        mark = LedgerMark.select(LedgerMark.seq).scalar()
    old_umask = os.umask(0o022)
    try:
        append_line({"seq": 1, "kind": "erase", "store": "s", "lead": None, "devices": []})
        assert erasure_ledger.trim(mark) == 1
    finally:
        os.umask(old_umask)
    assert oct(erasure_ledger.path().stat().st_mode & 0o777) == "0o600"
    text = erasure_ledger.path().read_text()
    assert "ha@example.com" not in text and lead.uid in text


def test_a_line_cut_short_by_a_power_cut_does_not_swallow_the_next_erasure(app, make_client, gateway):
    """A power cut mid-append leaves a line without its newline; the next append must not be glued
    to it (one unreadable line, and the erasure it carried lost to every later restore)."""
    lead = signed_in_lead(make_client, "10.0.0.38", "khanh@example.com")
    with open(erasure_ledger.path(), "a", encoding="utf-8") as ledger:
        ledger.write('{"seq":12,"kind":"era')  # no newline: the write was cut short
    with database.connection_context():
        privacy.erase_person(lead, [], gateway, "store-1", "guest")
        LedgerMark.update(seq=0).execute()  # the database as a backup from before the erasure
    assert [entry["lead"] for entry in erasure_ledger.pending()] == [lead.uid]


def test_trim_under_appends_from_many_threads_loses_no_line(app):
    """Appenders blocked on the lock while `trim` replaces the file reopen the new one."""
    import threading
    with database.connection_context():
        old = erasure_ledger.note("withdraw", "s", lead="old", purpose="marketing_email")
    kept = []

    def append(n):
        for _ in range(n):
            with database.connection_context():
                with database.atomic():
                    kept.append(erasure_ledger.note("withdraw", "s", lead="x", purpose="marketing_email"))

    threads = [threading.Thread(target=append, args=(25,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    dropped = sum(erasure_ledger.trim(old + 1) for _ in range(20))
    for thread in threads:
        thread.join()
    assert dropped == 1
    seqs = [json.loads(line)["seq"] for line in erasure_ledger.path().read_text().splitlines()]
    assert sorted(seqs) == sorted(kept) and len(set(seqs)) == 75


# -- 2. the panel's page for refused requests ------------------------------------------------------

@pytest.fixture
def panel_as(app, monkeypatch):
    """Accounts of each role (cheap hashing, as tests/panel does), and a client signed in as one."""
    from argon2 import PasswordHasher

    from portal import accounts, passwords
    from tests.panel.conftest import PASSWORD, PanelClient
    monkeypatch.setattr(passwords, "HASHER", passwords.BoundedHasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))
    for role in accounts.ROLES:
        accounts.create_manager(f"{role}1", PASSWORD, role)

    def make(role=None):
        client = PanelClient(app.test_client())
        if role:
            assert client.login(f"{role}1").status_code == 302
        return client
    return make


def test_the_refused_page_reflects_nothing_of_the_request(panel_as):
    manager = panel_as("manager")
    probe = "<script>alert(7)</script>"
    for answer in (manager.get(f"/panel/leads/{probe}?next={probe}"),
                   manager.post("/panel/settings", data={"csrf_token": probe, "x": probe})):
        body = answer.get_data(as_text=True)
        assert answer.status_code in (400, 403, 404) and "alert(7)" not in body and "<script>alert" not in body


def test_signed_out_a_refused_panel_request_shows_no_panel_nor_names(panel_as):
    stranger = panel_as()
    for answer in (stranger.post("/panel/login", data={"csrf_token": "forged", "username": "owner1", "password": "x"}),
                   stranger.get("/panel/no-such-page")):
        body = answer.get_data(as_text=True)
        assert answer.status_code in (400, 404)
        assert 'id="refused"' not in body and "<nav>" not in body
        assert "owner1" not in body and "manager1" not in body


def test_an_analyst_cannot_tell_a_real_person_from_a_made_up_one_by_the_refusal(panel_as, make_client):
    lead = signed_in_lead(make_client, "10.0.0.40", "lam@example.com")
    analyst = panel_as("analyst")
    real, made_up = analyst.get(f"/panel/leads/{lead.uid}"), analyst.get("/panel/leads/0123456789abcdef0123456789abcdef")
    assert real.status_code == made_up.status_code == 403
    assert real.get_data(as_text=True) == made_up.get_data(as_text=True).replace("0123456789abcdef0123456789abcdef", lead.uid)


# -- 3. the password reset cap ---------------------------------------------------------------------

def _account_with_email(app, vault):
    """manager1 (made by panel_as), with an address for resets."""
    from portal import password_reset
    from portal.models import Manager
    from tests.panel.conftest import PASSWORD
    password_reset.set_email(Manager.get(Manager.username == "manager1"), vault, "m1@example.org", PASSWORD, None)
    return Manager.get(Manager.username == "manager1")


def test_the_owners_reset_gives_a_guesser_no_tries_back(app, panel_as):
    """A reset kills every other code still out (marked used); the cap subtracts one right try per
    used code. Codes killed with wrong tries on them must not hand those tries back."""
    from portal import password_reset
    from portal.models import VerificationCode
    from portal.panel import runtime
    with app.app_context():
        vault = runtime().vault
    manager = _account_with_email(app, vault)
    resets = password_reset.Resets(vault, None, "Store")
    claim = f"{password_reset.CODE_PREFIX}{manager.id}"
    issued = resets.codes.issue("email", manager.email_index, None, None, claim_uid=claim)  # the owner's
    for tries in (5, 4):  # a guesser's codes: the mail went to the owner, the guesses were wrong
        VerificationCode.create(channel="email", destination_index=manager.email_index, code_hash="x" * 64,
                                expires_at=datetime_in(600), tries=tries, claim_uid=claim)
    assert resets._wrong_tries_today(manager) == 9
    resets.reset(issued.uid, issued.code, "a brand new passphrase 42", None)
    assert resets._wrong_tries_today(manager) == 9  # was 7: two more guesses today


def test_a_right_code_with_a_refused_password_costs_a_try(app, panel_as):
    """The right code kept good for another try (a password the rules refuse) counts as a try:
    otherwise the right-code path would be a free oracle."""
    from portal import accounts, password_reset
    from portal.panel import runtime
    with app.app_context():
        vault = runtime().vault
    manager = _account_with_email(app, vault)
    resets = password_reset.Resets(vault, None, "Store")
    issued = resets.codes.issue("email", manager.email_index, None, None, claim_uid=f"{password_reset.CODE_PREFIX}{manager.id}")
    with pytest.raises(accounts.AccountError):
        resets.reset(issued.uid, issued.code, "manager1manager1manager1", None)  # the rules refuse it
    assert resets._wrong_tries_today(manager) == 1


def test_the_cap_answers_a_made_up_ticket_and_a_capped_account_alike(app, panel_as):
    from portal import accounts, password_reset
    from portal.models import VerificationCode
    from portal.panel import runtime
    with app.app_context():
        vault = runtime().vault
    manager = _account_with_email(app, vault)
    resets = password_reset.Resets(vault, None, "Store")
    claim = f"{password_reset.CODE_PREFIX}{manager.id}"
    issued = resets.codes.issue("email", manager.email_index, None, None, claim_uid=claim)
    for _ in range(2):
        VerificationCode.create(channel="email", destination_index=manager.email_index, code_hash="x" * 64,
                                expires_at=datetime_in(600), tries=5, claim_uid=claim)
    answers = []
    for ticket, code in ((issued.uid, issued.code), ("made-up-ticket", "123456")):
        with pytest.raises(accounts.AccountError) as refused:
            resets.reset(ticket, code, "a brand new passphrase 42", None)
        answers.append((refused.value.code, str(refused.value)))
    assert answers[0] == answers[1]


def datetime_in(seconds):
    import datetime
    from portal.models import utcnow
    return utcnow() + datetime.timedelta(seconds=seconds)


def test_parallel_guesses_at_the_cap_get_no_try_past_it(app, panel_as, monkeypatch):
    """One try left today, two guesses at once on two tickets: the cap is read, then the try is
    counted. Both reading 9 before either counts would give an eleventh try. Guess A is held just
    after its cap check until guess B has read the cap too (or a second has passed: B is waiting on
    A's transaction, which is the fix)."""
    import threading

    from portal import accounts, password_reset, verification
    from portal.models import VerificationCode
    from portal.panel import runtime
    with app.app_context():
        vault = runtime().vault
    manager = _account_with_email(app, vault)
    resets = password_reset.Resets(vault, None, "Store")
    claim = f"{password_reset.CODE_PREFIX}{manager.id}"
    first = resets.codes.issue("email", manager.email_index, None, None, claim_uid=claim)
    second = VerificationCode.create(channel="email", destination_index=manager.email_index, code_hash="x" * 64,
                                     expires_at=datetime_in(600), tries=0, claim_uid=claim)
    VerificationCode.create(channel="email", destination_index=manager.email_index, code_hash="x" * 64,
                            expires_at=datetime_in(600), tries=password_reset.WRONG_TRIES_PER_DAY - 1, claim_uid=claim)
    b_read_the_cap = threading.Event()
    real_tries, real_check = password_reset.Resets._wrong_tries_today, verification.Codes.check

    def tries(manager):
        count = real_tries(manager)
        if threading.current_thread().name == "B":
            b_read_the_cap.set()
        return count

    def check(self, uid, code, *args, **kwargs):
        if threading.current_thread().name == "A":
            b_read_the_cap.wait(1)
        return real_check(self, uid, code, *args, **kwargs)

    monkeypatch.setattr(password_reset.Resets, "_wrong_tries_today", staticmethod(tries))
    monkeypatch.setattr(verification.Codes, "check", check)
    wrong = "000000" if first.code != "000000" else "111111"

    def guess(ticket):
        with database.connection_context():
            with pytest.raises(accounts.AccountError):
                resets.reset(ticket, wrong, "a brand new passphrase 42", None)

    a = threading.Thread(target=guess, args=(first.uid,), name="A")
    a.start()
    b = threading.Thread(target=guess, args=(second.uid,), name="B")
    b.start()
    a.join()
    b.join()
    assert real_tries(manager) == password_reset.WRONG_TRIES_PER_DAY


# -- 4. the central's seq ceiling (held: kept as a regression test) -------------------------------

def test_the_seq_ceiling_is_exact_and_no_event_without_seq_opens_it(monkeypatch):
    from central import batch
    from tests.central.fixtures import event
    now_ns = 1_790_000_000_123_456_789
    monkeypatch.setattr(batch.time, "time_ns", lambda: now_ns)
    ceiling = now_ns // 1000 + batch.SEQ_AHEAD_SECONDS * 1_000_000

    def body(*seqs):
        events = [event("visit.closed", device="3c:22:fb:00:00:01", start="2026-11-20 09:00:00",
                        end="2026-11-20 09:40:00", passerby=False) for _ in seqs]
        return json.dumps({"events": [{**e, **({"seq": s} if s is not None else {})} for e, s in zip(events, seqs)]}).encode()

    assert [e.seq for e in batch.parse_events(body(ceiling - 1, ceiling))] == [ceiling - 1, ceiling]
    for seqs in ((ceiling + 1,), (None, ceiling + 1), (5, ceiling + 1)):
        with pytest.raises(batch.Refused) as refused:
            batch.parse_events(body(*seqs))
        assert refused.value.status == 400 and "seq" in refused.value.message


def test_two_services_starting_at_once_redo_each_line_once(app, settings, make_client, gateway):
    """The portal and the collector start together on a restored database: both replay. Each line
    is applied once (every transaction takes the write lock first, and each re-reads the record)."""
    import threading

    from portal.config import database_path
    from portal.db import init_db
    from tests.faults.test_erasure_ledger import backup, put_back
    a = signed_in_lead(make_client, "10.0.0.41", "nga@example.com", marketing=["marketing_email"])
    b = signed_in_lead(make_client, "10.0.0.42", "oanh@example.com")
    copy = backup(settings)
    with database.connection_context():
        consent.record(a, "marketing_email", False, consent.Where("store-1", None, None, "my_data"))
        privacy.erase_person(b, [], gateway, "store-1", "guest")
    put_back(settings, copy)
    init_db(database_path(settings))
    done = []

    def start():
        done.append(erasure_ledger.replay())

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(d["withdrawn"] for d in done) == 1 and sum(d["erased"] for d in done) == 1
    with database.connection_context():
        assert Consent.select().where((Consent.lead == a.id) & (Consent.method == "restore")).count() == 1
        assert Lead.get_by_id(b.id).erased_at is not None


def test_a_backup_from_before_its_database_had_an_identity_still_redoes_the_lines(app, settings, make_client, gateway):
    """A backup taken before this version (its header holds no identity) is of this ledger's
    lineage: restored, it takes the identity the ledger's lines name and redoes them."""
    import sqlite3

    from portal.config import database_path
    from portal.db import init_db
    from tests.faults.test_erasure_ledger import backup, put_back
    lead = signed_in_lead(make_client, "10.0.0.43", "phuong@example.com")
    copy = backup(settings)
    with sqlite3.connect(copy) as older:
        older.execute("PRAGMA application_id = 0")
    with database.connection_context():
        here = database.execute_sql("PRAGMA application_id").fetchone()[0]
        privacy.erase_person(lead, [], gateway, "store-1", "guest")
    assert json.loads(erasure_ledger.path().read_text().splitlines()[-1])["db"] == here
    put_back(settings, copy)
    init_db(database_path(settings))
    assert erasure_ledger.replay()["erased"] == 1
    with database.connection_context():
        assert Lead.get_by_id(lead.id).erased_at is not None
        assert database.execute_sql("PRAGMA application_id").fetchone()[0] == here
