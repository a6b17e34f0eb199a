"""Segments over people, and exports that only ever contain consenting people."""
import datetime
import json
import subprocess

import pytest

from portal import exports, segments
from portal.core import audience
from portal.models import Device, Lead, Segment, Visit, utcnow
from portal.visitors import Client, SignInForm
from tests.conftest import prove_claims

NOW = utcnow()


def person(visitors, n, email=None, phone=None, marketing=(), visits=(), language="en", proved=True, followed=True):
    """A signed-in person; `followed`: they agreed to visit analytics (segments need it, issue 15)."""
    mac = f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"
    client = Client(f"10.0.{n // 256}.{n % 256}", mac)
    outcome = visitors.sign_in(SignInForm(email=email or "", phone=phone or "", terms=True, language=language,
                                          marketing=frozenset(marketing), adult=True,
                                          analytics=frozenset({"visit_analytics"} if followed else ())), client)
    assert outcome.ok, outcome.errors
    if proved:  # double opt-in: exports count proved contacts only (tests/portal/test_verified_identity.py)
        prove_claims(visitors, outcome, client)
    device = Device.get(Device.mac == mac)
    for days_ago, minutes in visits:
        start = NOW - datetime.timedelta(days=days_ago)
        Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=minutes))
    return Lead.get(Lead.id == device.lead_id)


@pytest.fixture
def crowd(visitors):
    return {
        "newbie": person(visitors, 1, "new@example.com", visits=[(2, 20)]),
        "regular": person(visitors, 2, "reg@example.com", "0912345678", ["marketing_email", "marketing_sms", "ad_audiences"],
                          visits=[(1, 30), (5, 40), (9, 25), (15, 50), (20, 35), (60, 30)]),
        "lapsed": person(visitors, 3, "lapsed@example.com", marketing=["marketing_email"], visits=[(45, 30), (200, 30)],
                         language="vi"),
        "lost": person(visitors, 4, phone="0987654321", marketing=["marketing_sms", "ad_audiences"], visits=[(150, 30)]),
    }


def members(key):
    return {m.lead_id for m in Segment.get(Segment.key == key).segmentmember_set}


def test_builtin_segments(crowd):
    counts = segments.recompute(NOW)
    ids = {k: v.id for k, v in crowd.items()}
    assert members("new") == {ids["newbie"]}
    assert members("returning") == {ids["regular"]}
    assert members("loyal") == {ids["regular"]}
    assert members("lapsed") == {ids["lapsed"]}
    assert members("lost") == {ids["lost"]}
    assert counts == {"new": 1, "returning": 1, "loyal": 1, "lapsed": 1, "lost": 1}


def test_thresholds_are_editable_and_custom_rules_combine(crowd):
    segments.recompute(NOW)
    segments.update_builtin("loyal", {"visits_min": 7, "window_days": 90, "recency_max_days": 30})
    custom = segments.save_custom("Long stays, email OK", {"dwell_min_minutes": 30, "consent": "marketing_email"})
    vi = segments.save_custom("Vietnamese speakers", {"language": "vi"})
    segments.recompute(NOW)
    assert members("loyal") == set()
    assert members(custom.key) == {crowd["regular"].id, crowd["lapsed"].id}
    assert members(vi.key) == {crowd["lapsed"].id}


@pytest.mark.parametrize("rule,code", [({}, "empty"), ({"visits_min": -1}, "visits_min"), ({"visits_min": "x"}, "visits_min"),
                                       ({"consent": "sell"}, "consent"), ({"colour": "red"}, "colour")])
def test_bad_rules_are_refused(app, rule, code):
    with pytest.raises(segments.RuleError) as exc:
        segments.save_custom("x", rule)
    assert exc.value.code == code


def test_withdrawal_and_erasure_leave_exports(crowd, visitors):
    segments.recompute(NOW)
    everyone = segments.save_custom("Everyone who came", {"visits_min": 1, "window_days": 3650})
    segments.recompute(NOW)
    sid = everyone.id
    rows = list(exports.export_rows(sid, "csv", visitors.vault))
    assert rows[0] == ["email", "phone", "name", "language"]
    assert sorted(r[:2] for r in rows[1:]) == [["", "+84987654321"], ["lapsed@example.com", ""],
                                               ["reg@example.com", "+84912345678"]]  # newbie gave no marketing consent
    meta = list(exports.export_rows(sid, "meta", visitors.vault))
    assert len(meta) == 3  # header + regular + lost (ad_audiences)
    visitors.withdraw(Client("10.0.0.2", "02:00:00:00:00:02"), "ad_audiences")
    # Erasing a proved person takes the proof of this session (a code), else only the device goes.
    visitors.erase(Client("10.0.0.4", "02:00:00:00:00:04"), {crowd["lost"].uid})
    assert list(exports.export_rows(sid, "meta", visitors.vault)) == [["email", "phone"]]
    assert ["", "+84987654321"] not in [r[:2] for r in exports.export_rows(sid, "csv", visitors.vault)]


def shasum(text):
    return subprocess.run(["sha256sum"], input=text.encode(), capture_output=True, check=True).stdout.split()[0].decode()


def test_hashing_follows_each_platform(crowd, visitors):
    segments.recompute(NOW)
    sid = Segment.get(Segment.key == "loyal").id
    meta = list(exports.export_rows(sid, "meta", visitors.vault))
    google = list(exports.export_rows(sid, "google", visitors.vault))
    assert meta[1] == [shasum("reg@example.com"), shasum("84912345678")]      # Meta: digits, no '+'
    assert google[0] == ["Email", "Phone"]
    assert google[1] == [shasum("reg@example.com"), shasum("+84912345678")]   # Google: E.164 with '+'



def test_the_appliance_writes_the_core_audience_files(crowd, visitors):
    """The central store's exports are built from portal/core/audience.py: the appliance's agree."""
    segments.recompute(NOW)
    sid = Segment.get(Segment.key == "loyal").id
    for kind in audience.KINDS:
        assert next(exports.export_rows(sid, kind, visitors.vault)) == list(audience.HEADERS[kind])
    for kind in ("meta", "google"):
        assert list(exports.export_rows(sid, kind, visitors.vault))[1] == audience.hashed_row(kind, "reg@example.com", "+84912345678")
