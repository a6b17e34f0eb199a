"""The domain core (portal/core/): pure, shared by the appliance and the central store, and the
central store loads no appliance database module through it or any other way."""
from __future__ import annotations

import ast
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from portal.core import audience, events, macs, purposes, times, wire

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "portal" / "core"
APPLIANCE_DATABASE = ("portal.db", "portal.models")
HEAVY = ("flask", "werkzeug", "peewee", "playhouse", "scapy", "psycopg2")


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def _central_modules() -> list[str]:
    base = ROOT / "central"
    return sorted("central." + p.relative_to(base).with_suffix("").as_posix().replace("/", ".")
                  for p in base.rglob("*.py") if p.name != "__init__.py" and "migrations" not in p.parts)


def test_the_central_store_loads_no_appliance_database_module():
    modules = _central_modules()
    assert {"central.api", "central.ingest", "central.sync_api", "central.batch"} <= set(modules)
    loaded = _loaded_after("import central\n" + "\n".join(f"import {m}" for m in modules))
    assert set(modules) <= loaded  # it did import them all
    assert not loaded & set(APPLIANCE_DATABASE), sorted(loaded & set(APPLIANCE_DATABASE))


def test_the_check_sees_an_appliance_database_module_when_one_is_loaded():
    # The test above must be able to fail: portal.exports still reads the appliance's database.
    assert "portal.db" in _loaded_after("import portal.exports")


def _core_modules() -> list[Path]:
    found = sorted(CORE.glob("*.py"))
    assert {p.name for p in found} >= {"wire.py", "events.py", "segment_rules.py", "audience.py", "macs.py",
                                       "purposes.py", "times.py", "numbers.py"}
    return found


def test_the_core_imports_only_the_standard_library_and_itself():
    bad = []
    for path in _core_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if isinstance(node, ast.ImportFrom) and node.level:
                bad.append(f"{path.name}: relative import")
            for name in names:
                top = name.split(".")[0]
                if not (top in sys.stdlib_module_names or name == "portal.core" or name.startswith("portal.core.")):
                    bad.append(f"{path.name}: {name}")
    assert not bad, bad


def test_importing_the_core_loads_no_framework_database_or_capture_library():
    names = [p.stem for p in _core_modules() if p.stem != "__init__"]
    loaded = _loaded_after("\n".join(f"import portal.core.{n}" for n in names))
    assert {f"portal.core.{n}" for n in names} <= loaded
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, heavy
    outside = sorted(m for m in loaded if m.startswith("portal.") and not m.startswith("portal.core"))
    assert not outside, outside


def test_each_fact_has_one_definition():
    # The languages, the purposes and the MAC pattern are written once, in the core.
    texts = {p: p.read_text() for pkg in ("portal", "collector", "central") for p in (ROOT / pkg).rglob("*.py")
             if CORE not in p.parents and "migrations" not in p.parts}
    for needle in ('("vi", "en")', '"marketing_email", "marketing_sms", "ad_audiences"', "{2}(:[0-9a-f]{2}){5}",
                   "& 0x02", "def sign(", "def sha256(", "def meta_phone("):
        copies = sorted(str(p.relative_to(ROOT)) for p, text in texts.items() if needle in text)
        assert not copies, f"{needle} is defined outside portal/core in {copies}"


# -- the facts themselves ---------------------------------------------------------------------------

def test_purposes_and_languages():
    assert purposes.PURPOSES == ("wifi_terms", "marketing_email", "marketing_sms", "ad_audiences",
                                 "visit_analytics", "chain_sharing")
    assert purposes.REQUIRED_PURPOSE not in purposes.OPTIONAL_PURPOSES
    assert not set(purposes.MARKETING_PURPOSES) & set(purposes.ANALYTICS_PURPOSES)  # channels stay channels
    assert purposes.DEFAULT_LANGUAGE == "vi" and purposes.LANGUAGES == ("vi", "en")


@pytest.mark.parametrize("mac,ok,private", [("3c:22:fb:00:00:01", True, False), ("02:00:00:00:00:01", True, True),
                                            ("da:a1:19:00:00:01", True, True), ("3C:22:FB:00:00:01", False, False),
                                            ("3c-22-fb-00-00-01", False, False), ("3c:22:fb:00:00:01\n", False, False)])
def test_mac_pattern_and_randomized_bit(mac, ok, private):
    assert macs.is_mac(mac) is ok
    if ok:
        assert macs.randomized(mac) is private


def test_audience_normalizers_and_hashes():
    assert audience.normalize_email("  Mixed.Case@Example.COM ") == "mixed.case@example.com"
    assert audience.meta_phone("+84912345678") == "84912345678"
    assert audience.google_phone("+33612345678") == "+33612345678"
    assert audience.hashed_row("meta", " A@B.example ", "+84912345678") == [
        audience.sha256("a@b.example"), audience.sha256("84912345678")]
    assert audience.hashed_row("google", None, "+84912345678") == ["", audience.sha256("+84912345678")]
    with pytest.raises(ValueError, match="not an ad platform"):
        audience.hashed_row("csv", "a@b.example", None)


def test_csv_neutralises_formulas_but_keeps_phones():
    text = "".join(audience.to_csv(iter([["=HYPERLINK(\"x\")", "+84912345678", "-2", "@cmd", "ok"]])))
    assert text == '"\'=HYPERLINK(""x"")",+84912345678,\'-2,\'@cmd,ok\n'


def test_times_round_trip_and_event_time():
    assert times.stamp(0) == "1970-01-01 00:00:00" and times.stamp(1.5) == "1970-01-01 00:00:01.500000"
    assert times.stamp(0.9999999) == "1970-01-01 00:00:01"
    assert times.epoch(times.stamp(1763632800.25)) == 1763632800.25
    assert times.event_time("2026-11-20T17:00:00+07:00") == datetime.datetime(2026, 11, 20, 10, 0)
    for bad in ("0001-01-01T00:00:00+14:00", "yesterday", 17, "2" * 41):
        with pytest.raises(ValueError, match="time"):
            times.event_time(bad)
    assert times.system_utcnow().tzinfo is None


def test_a_signature_is_64_hex_digits_and_nothing_more():
    signature = wire.sign(b"k" * 32, 1763632800, b"body")
    assert wire.well_formed_signature(signature)
    for bad in (signature + "\n", signature.upper(), signature[:-1], ""):
        assert not wire.well_formed_signature(bad)


GOOD = {"uid": "e1", "topic": "visit.closed", "at": "2026-11-20T10:00:00",
        "data": {"device": "02:00:00:00:00:01", "start": "2026-11-20T09:00:00", "end": "2026-11-20T09:40:00",
                 "passerby": False}}


def test_a_valid_event_becomes_a_frozen_event():
    event = events.validate(GOOD)
    assert (event.uid, event.topic, event.at) == ("e1", "visit.closed", datetime.datetime(2026, 11, 20, 10, 0))
    with pytest.raises(AttributeError):
        event.uid = "other"


@pytest.mark.parametrize("change,field", [
    ({"uid": "no spaces"}, "uid"), ({"topic": "visit.opened"}, "topic"), ({"at": "soon"}, "time"),
    ({"data": {**GOOD["data"], "device": "02:00:00:00:00:0G"}}, "device"),
    ({"data": {**GOOD["data"], "end": "0001-01-01T00:00:00+14:00"}}, "time"),
    ({"data": {**GOOD["data"], "passerby": "no"}}, "passerby"),
    ({"topic": "consent.recorded", "data": {"lead": "l1", "purpose": "sell", "granted": True}}, "purpose"),
    ({"topic": "lead.upserted", "data": {"lead": "l1", "language": "fr"}}, "language"),
    ({"topic": "devices.erased", "data": {"devices": ["02:00:00:00:00:01", 7]}}, "devices"),
    ({"data": []}, "event"),
    # `$` would let a final newline through each of these
    ({"uid": "e1\n"}, "uid"),
    ({"topic": "segment.members", "data": {"segment": "loyal", "members": ["l1", "l2\n"]}}, "members"),
    ({"topic": "devices.erased", "data": {"devices": ["02:00:00:00:00:01\n"]}}, "devices"),
])
def test_a_bad_event_names_its_field(change, field):
    with pytest.raises(events.EventError) as exc:
        events.validate({**GOOD, **change})
    assert exc.value.args[0] == field


def test_every_topic_the_appliance_writes_is_one_the_core_knows():
    written = set()
    for pkg in ("portal", "collector"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            written |= set(re.findall(r"INTO outbox_event \([^)]*\)\s*(?:VALUES \(|SELECT )[^']*'([a-z.]+)'", text))
            for node in ast.walk(ast.parse(text, str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit"
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    written.add(node.args[0].value)
    assert {"lead.upserted", "visit.closed"} <= written  # both ways of writing one are seen
    assert written <= set(events.TOPICS), written - set(events.TOPICS)
