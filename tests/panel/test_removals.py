"""The export log and removal lists (issue 15): every export recorded with its people and consent
versions; a withdrawal or an erasure puts them on the removal list of each platform they went to,
hashed in that platform's format, an erased person with no plaintext kept."""
import datetime
import hashlib
import json
import re

from portal import exports, segments
from portal.models import AuditEntry, Consent, ExportLog, ExportMember, Lead
from portal.visitors import Client
from tests.portal.test_segments_exports import NOW, person


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def as_of(page):
    return re.search(r'name="as_of" value="([^"]+)"', page).group(1)


def test_exports_are_logged_and_withdrawals_make_removal_lists(app, visitors, as_role):
    reg = person(visitors, 2, "reg@example.com", "0912345678", ["marketing_email", "marketing_sms", "ad_audiences"],
                 visits=[(1, 30)])
    lost = person(visitors, 4, "lost@example.com", "0987654321", ["marketing_sms", "ad_audiences"], visits=[(2, 30)])
    key = segments.save_custom("Everyone", {"visits_min": 1, "window_days": 3650}).key
    segments.recompute(NOW)
    from portal import compliance
    compliance.record_transfer("meta", "", "", "2026-01-05", "", "manager:owner1")  # exports abroad need it
    client = as_role("manager")
    assert client.get(f"/panel/segments/{key}/export/meta").status_code == 200
    client.get(f"/panel/segments/{key}/export/csv")
    logs = list(ExportLog.select().order_by(ExportLog.id))
    assert [(log.kind, log.members, log.segment_key) for log in logs] == [("meta", 2, key), ("csv", 2, key)]
    assert logs[0].actor == logs[1].actor and logs[0].actor
    meta_members = {m.lead_id: m for m in ExportMember.select().where(ExportMember.export == logs[0])}
    assert set(meta_members) == {reg.id, lost.id}
    assert meta_members[reg.id].email_hash == sha("reg@example.com")
    assert meta_members[reg.id].phone_hash == sha("84912345678")  # Meta's format: digits, no '+'
    agreed = Consent.select().where((Consent.lead == reg) & (Consent.purpose == "ad_audiences")).get().policy_sha256
    assert agreed and json.loads(meta_members[reg.id].policies) == {"ad_audiences": agreed}
    csv_lost = ExportMember.get((ExportMember.export == logs[1]) & (ExportMember.lead == lost))
    assert (csv_lost.email_hash, csv_lost.phone_hash) == (None, sha("+84987654321"))  # no email consent: not sent
    assert set(json.loads(csv_lost.policies)) == {"marketing_sms"}

    page = client.get("/panel/privacy/removals").get_data(as_text=True)
    assert 'id="due-meta">0<' in page and 'id="due-csv">0<' in page
    # Reg withdraws the ad audiences; Lost is erased (proved with this session's code).
    visitors.withdraw(Client("10.0.0.2", "02:00:00:00:00:02"), "ad_audiences")
    visitors.erase(Client("10.0.0.4", "02:00:00:00:00:04"), {lost.uid})
    assert Lead.get_by_id(lost.id).erased_at is not None
    page = client.get("/panel/privacy/removals").get_data(as_text=True)
    assert 'id="due-meta">2<' in page and 'id="due-google">0<' in page and 'id="due-csv">1<' in page
    stamp = as_of(page)
    meta = client.get(f"/panel/privacy/removals/meta.csv?as_of={stamp}").get_data(as_text=True).splitlines()
    assert meta[0] == "email,phone"
    assert sorted(meta[1:]) == sorted([f"{sha('reg@example.com')},{sha('84912345678')}",
                                       f"{sha('lost@example.com')},{sha('84987654321')}"])
    csv = client.get(f"/panel/privacy/removals/csv.csv?as_of={stamp}").get_data(as_text=True).splitlines()
    # Reg still agrees to emails and SMS: nothing of theirs leaves the CRM. Lost is erased: only hashes.
    assert csv == ["email,phone,email_sha256,phone_sha256", f",,,{sha('+84987654321')}"]
    # An erased person's entries hold no plaintext anywhere.
    for m in ExportMember.select().where(ExportMember.lead == lost):
        kept = f"{m.email_hash}{m.phone_hash}{m.policies}"
        assert "987654321" not in kept and "lost@" not in kept

    # Marked done: the hashes go; a later withdrawal is a new entry, not one marked with the old list.
    later = datetime.datetime.fromisoformat(stamp)
    done = client.form("/panel/privacy/removals/meta/done", {"as_of": stamp}, token_page="/panel/privacy/removals")
    assert done.status_code == 302 and "done=meta" in done.headers["Location"]
    assert ExportMember.select().where((ExportMember.export == logs[0]) & ExportMember.email_hash.is_null(False)).count() == 0
    assert exports.removals("meta", visitors.vault) == []
    assert exports.removals("csv", visitors.vault, later)  # another platform's list is its own
    assert "removal_done" in [e.action for e in AuditEntry.select()]
    visitors.withdraw(Client("10.0.0.2", "02:00:00:00:00:02"), "marketing_email")
    csv_due = exports.removals("csv", visitors.vault)
    assert {(r.email_hash, r.phone_hash) for r in csv_due} == {(sha("reg@example.com"), None), (None, sha("+84987654321"))}
    assert len(exports.removals("csv", visitors.vault, later)) == 1  # the withdrawal came after that list
    rows = list(exports.removal_rows("csv", visitors.vault))
    assert ["reg@example.com", "", sha("reg@example.com"), ""] in rows  # not erased: the CRM gets the address


def test_bad_removal_requests_change_nothing(app, as_role):
    client = as_role("owner")
    assert client.get("/panel/privacy/removals/tiktok.csv?as_of=2026-01-01").status_code == 404
    assert client.get("/panel/privacy/removals/meta.csv?as_of=yesterday").status_code == 400
    assert client.get("/panel/privacy/removals/meta.csv").status_code == 400
    bad = client.form("/panel/privacy/removals/meta/done", {"as_of": "x"}, token_page="/panel/privacy/removals")
    assert bad.status_code == 400
    assert not [e for e in AuditEntry.select() if e.action == "removal_done"]
