"""The sign-in journal's replay is idempotent: a portal killed between storing a replayed sign-in
and releasing its slot replays it again at start, and that adds nothing (issue 10)."""
from __future__ import annotations

from portal.models import Authorization, Consent, Lead, new_uid, utcnow


def test_a_sign_in_replayed_twice_is_stored_once(visitors):
    claim = {"uid": new_uid(), "at": utcnow().isoformat(), "values": {"email": "twice@example.com", "name": ""},
             "language": "en", "mac": "02:00:00:07:00:01", "ip": "10.7.7.1",
             "policies": {"wifi_terms": None, "marketing_email": None}}
    assert visitors._store_sign_in(claim, replay=True) is not None
    before = (Lead.select().count(), Consent.select().count(), Authorization.select().count())
    assert visitors._store_sign_in(claim, replay=True) is None
    assert (Lead.select().count(), Consent.select().count(), Authorization.select().count()) == before == (1, 2, 1)


def test_the_journal_survives_a_restart_and_keeps_nothing_readable(visitors, tmp_path):
    from portal.journal import Journal
    journal = Journal(tmp_path / "j.bin", visitors.vault, slots=4)
    assert journal.append({"values": {"email": "secret@example.com"}})
    journal.close()
    assert b"secret@example.com" not in (tmp_path / "j.bin").read_bytes()
    again = Journal(tmp_path / "j.bin", visitors.vault, slots=4)
    (slot, record), = again.pending()
    assert record["values"]["email"] == "secret@example.com" and len(again) == 1
    again.release(slot)
    assert again.pending() == [] and len(Journal(tmp_path / "j.bin", visitors.vault, slots=4)) == 0
