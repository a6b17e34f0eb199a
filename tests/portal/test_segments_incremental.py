"""Incremental segments (issue 18): after any sequence of sign-ins, visits, consents, erasures,
restrictions, rule changes and time passing, the incremental run's membership is exactly what a
full recompute would give, and most runs really are incremental."""
from __future__ import annotations

import datetime
import json
import random

import pytest

from portal import privacy, segments
from portal.db import database
from portal.gateway.null import NullGateway
from portal.models import Consent, Device, Lead, Segment, Visit, utcnow
from portal.visitors import Client, SignInForm

START = utcnow().replace(microsecond=0)


def stored() -> dict[str, set[int]]:
    out: dict[str, set[int]] = {s.key: set() for s in Segment.select()}
    for key, lead_id in database.execute_sql(
            "SELECT s.key, m.lead_id FROM segment_member m JOIN segment s ON s.id = m.segment_id"):
        out[key].add(lead_id)
    return out


def expected(now: datetime.datetime) -> dict[str, set[int]]:
    """What a full run would store, computed without writing."""
    found = list(Segment.select())
    rules = {s.id: json.loads(s.rule) for s in found}
    stats = segments.lead_stats(segments.rule_windows(list(rules.values())), now)
    return {s.key: {i for i, stat in stats.items() if segments.member(s.key, rules[s.id], stat, now)} for s in found}


class Shop:
    def __init__(self, visitors, rng: random.Random):
        self.visitors, self.rng, self.now, self.n = visitors, rng, START, 0
        self.devices: list[int] = []

    def sign_in(self) -> None:
        self.n += 1
        n = self.n
        mac = f"02:00:00:01:{n // 256:02x}:{n % 256:02x}"
        client = Client(f"10.1.{n // 256}.{n % 256}", mac)
        followed = self.rng.random() < 0.8
        outcome = self.visitors.sign_in(SignInForm(
            email=f"p{n}@example.com", terms=True, language=self.rng.choice(("vi", "en")), adult=True,
            marketing=frozenset({"marketing_email"} if self.rng.random() < 0.5 else ()),
            analytics=frozenset({"visit_analytics"} if followed else ())), client)
        assert outcome.ok, outcome.errors
        self.devices.append(Device.get(Device.mac == mac).id)
        self.visit(self.devices[-1], back_minutes=self.rng.uniform(5, 120))

    def visit(self, device_id: int, back_minutes: float) -> None:
        start = self.now - datetime.timedelta(minutes=back_minutes)
        Visit.create(device=device_id, start=start, end=start + datetime.timedelta(minutes=self.rng.uniform(3, 90)),
                     passerby=self.rng.random() < 0.1)

    def lead(self) -> Lead | None:
        live = list(Lead.select().where(Lead.erased_at.is_null()))
        return self.rng.choice(live) if live else None

    def step(self) -> str:
        roll = self.rng.random()
        if roll < 0.25 or not self.devices:
            self.sign_in()
            return "sign_in"
        if roll < 0.5:
            device = Device.get_or_none(Device.id == self.rng.choice(self.devices))
            if device is not None:
                self.visit(device.id, back_minutes=self.rng.uniform(0, 60))
            return "visit"
        if roll < 0.75:  # time passes: mostly a scheduler interval, sometimes days or weeks
            minutes = self.rng.choice((15, 15, 15, 60, 6 * 60, 3 * 24 * 60, 20 * 24 * 60, 29 * 24 * 60 + 23 * 60))
            self.now += datetime.timedelta(minutes=minutes)
            return "time"
        lead = self.lead()
        if lead is None:
            return "none"
        if roll < 0.82:
            # A withdrawal as the guest's "my data" page records it (the desk withdraws channels only).
            Consent.create(lead=lead, purpose=self.rng.choice(("visit_analytics", "marketing_email")), granted=False,
                           store_id="store-1", method="portal_my_data")
            return "withdraw"
        if roll < 0.87:
            privacy.erase_person(lead, list(lead.devices), NullGateway(), "store-1", "test")
            return "erase"
        if roll < 0.91:
            if lead.restricted_at is None:
                privacy.restrict(lead, "test", "objection")
            else:
                privacy.lift_restriction(lead, "test")
            return "restrict"
        if roll < 0.94:
            segments.update_builtin("loyal", {"visits_min": self.rng.choice((2, 3, 5)), "window_days": 90,
                                              "recency_max_days": self.rng.choice((7, 30))})
            return "rule"
        if roll < 0.97:  # retention deletes old visits
            Visit.delete().where(Visit.start < self.now - datetime.timedelta(days=40)).execute()
            return "purge"
        # A device moves to another person (a proof folds records) or a new device joins someone.
        device = Device.get_or_none(Device.id == self.rng.choice(self.devices))
        if device is not None:
            Device.update(lead=lead.id).where(Device.id == device.id).execute()
        return "link"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_runs_equal_a_full_recompute(visitors, seed):
    rng = random.Random(seed)
    shop = Shop(visitors, rng)
    segments.recompute(shop.now)
    modes: dict[str, int] = {}
    for _ in range(160):
        shop.step()
        if rng.random() < 0.4:
            result = segments.refresh(shop.now)
            modes[result["mode"]] = modes.get(result["mode"], 0) + 1
            assert stored() == expected(shop.now), (seed, result)
    result = segments.refresh(shop.now)
    assert stored() == expected(shop.now)
    # The comparison means something: most runs were incremental, and segments were not empty.
    assert modes.get("incremental", 0) > modes.get("full", 0), modes
    assert sum(len(m) for m in stored().values()) > 0
    # The full run agrees with the last incremental one and changes nothing.
    before = stored()
    segments.recompute(shop.now)
    assert stored() == before


def test_time_alone_moves_a_person_to_lapsed(visitors):
    shop = Shop(visitors, random.Random(9))
    shop.sign_in()
    lead_id = Device.get(Device.id == shop.devices[0]).lead_id
    segments.recompute(shop.now)
    assert lead_id in stored()["new"]
    for _ in range(4 * 31):  # a month of quarter hours, six hours at a time
        shop.now += datetime.timedelta(hours=6)
        result = segments.refresh(shop.now)
    assert result["mode"] == "incremental" and result["people"] <= 1
    assert lead_id in stored()["lapsed"] and lead_id not in stored()["new"]


def test_notes_written_during_a_run_wait_for_the_next(visitors, monkeypatch):
    shop = Shop(visitors, random.Random(4))
    shop.sign_in()
    segments.recompute(shop.now)
    shop.now += datetime.timedelta(minutes=15)
    original = segments.lead_stats

    def meanwhile(*args, **kwargs):  # a sign-in lands while the job computes
        stats = original(*args, **kwargs)
        shop.sign_in()
        return stats
    monkeypatch.setattr(segments, "lead_stats", meanwhile)
    segments.refresh(shop.now)
    monkeypatch.setattr(segments, "lead_stats", original)
    newcomer = Device.get(Device.id == shop.devices[-1]).lead_id
    assert database.execute_sql("SELECT count(*) FROM segment_dirty WHERE lead_id = ?", (newcomer,)).fetchone()[0] > 0
    result = segments.refresh(shop.now)
    assert result["mode"] == "incremental"
    assert stored() == expected(shop.now)


def test_a_text_change_or_a_clock_going_back_makes_the_run_full(visitors):
    shop = Shop(visitors, random.Random(5))
    shop.sign_in()
    segments.recompute(shop.now)
    shop.now += datetime.timedelta(minutes=15)
    assert segments.refresh(shop.now)["mode"] == "incremental"
    assert segments.refresh(shop.now - datetime.timedelta(hours=1))["reason"] == "clock went back"
    segments.update_builtin("lost", {"recency_min_days": 60})
    result = segments.refresh(shop.now)
    assert (result["mode"], result["reason"]) == ("full", "a text or a rule changed")
    assert segments.refresh(shop.now + datetime.timedelta(days=2))["reason"] == "daily full run"


def test_a_restriction_announces_the_segments_it_leaves(visitors):
    """privacy.restrict takes the person out of their segments at once; the central store and the
    CRM's webhooks are told (a segment.members event whose members are read when sent)."""
    from portal import sync
    from portal.models import OutboxEvent
    shop = Shop(visitors, random.Random(11))
    for _ in range(3):
        shop.sign_in()
    segments.recompute(shop.now)
    lead = Lead.get(Lead.id == Device.get(Device.id == shop.devices[0]).lead_id)
    joined = {s.key for s in segments.segments_of(lead.id)}
    assert joined
    last = OutboxEvent.select().order_by(OutboxEvent.id.desc()).first().id
    privacy.restrict(lead, "test", "objection")
    told = [e for e in OutboxEvent.select().where((OutboxEvent.id > last) & (OutboxEvent.topic == "segment.members"))]
    assert {json.loads(e.payload)["segment"] for e in told} == joined
    wire = sync.to_wire(told[0], visitors.vault)
    assert lead.uid not in wire["data"]["members"]
