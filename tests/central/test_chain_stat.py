"""Chain segments kept as events arrive (issue 18, central/chainstat.py): after random sequences of
batches (sign-ins at several stores, visits, consent grants and withdrawals, restrictions,
erasures, merges, purges, time passing), what GET /v1/segments and the exports serve equals the
former computation over every visit (chainstat.scan_segments), and the kept rows equal a rebuild.
Real PostgreSQL."""
import datetime
import hashlib
import random

import pytest

from central import add_store, chainstat
from central.api import EXPORT_PURPOSES, LEFT_OUT_HEADER
from central.db import database
from central.people import CHANNELS, purge_person
from portal.core.segment_rules import BUILTIN
from tests.central.fixtures import event, post_batch
from tests.central.test_api import auth, tokens  # noqa: F401  (the fixture)
from tests.central.test_ingest import IDX
from tests.central.test_sync_e2e import central_server  # noqa: F401  (the fixture)

START = datetime.datetime(2026, 6, 1, 9, 0)
EMAILS = [f"p{i}@example.com" for i in range(12)]
PHONES = [f"+849000000{i:02d}" for i in range(12)]
IDX.update({k: hashlib.sha256(k.encode()).hexdigest() for k in EMAILS + PHONES})
PURPOSES = ("visit_analytics", "visit_analytics", "visit_analytics", "marketing_email", "marketing_sms", "ad_audiences")


def expected(cur, now):
    """What GET /v1/segments answered when it scanned every visit per request."""
    found, consents = chainstat.scan_segments(cur, now)
    out = []
    for key, ids in found.items():
        consented = {p: sum(consents.get(i, ({}, []))[0].get(p) is True for i in ids) for p in CHANNELS}
        waiting = {p: sum(p in consents.get(i, ({}, []))[1] for i in ids) for p in CHANNELS}
        out.append({"key": key, "name": BUILTIN[key][0], "members": len(ids), "consented": consented,
                    "left_out_unverified": waiting})
    return out, found, consents


class Chain:
    """A random chain: three stores, twelve people's contacts, leads and devices named by store and number."""

    def __init__(self, rng, client, keys, tokens):
        self.rng, self.client, self.keys, self.tokens = rng, client, keys, tokens
        self.now = START

    def stamp(self, back_days=0.0):
        return (self.now - datetime.timedelta(days=back_days)).replace(microsecond=0)

    def lead(self, store):
        return f"{store[:2]}{self.rng.randrange(8)}"

    def mac(self, store):
        return f"3c:22:fb:00:{list(self.keys).index(store):02x}:{self.rng.randrange(8):02x}"

    def random_event(self, store):
        rng, uid = self.rng, self.lead(store)
        kind = rng.choices(["upsert", "consent", "link", "visit", "restrict", "erase", "devices", "merge"],
                           [3, 5, 3, 10, 0.25, 0.15, 0.3, 0.4])[0]
        at = self.stamp(rng.uniform(0, 0.5)).isoformat()
        if kind == "upsert":
            n = rng.randrange(len(EMAILS))
            email, phone = (EMAILS[n], None) if rng.random() < 0.7 else (None, PHONES[n])
            data = dict(lead=uid, email=email, phone=phone, name=f"N{n}", language=rng.choice(["vi", "en"]),
                        email_index=IDX[email] if email else None, phone_index=IDX[phone] if phone else None,
                        chain_sharing=rng.random() < 0.85)
            if rng.random() < 0.7:
                data["email_verified" if email else "phone_verified"] = True
            return event("lead.upserted", at=at, **data)
        if kind == "consent":
            return event("consent.recorded", at=at, lead=uid, purpose=rng.choice(PURPOSES),
                         granted=rng.random() < 0.85, policy_sha256="c" * 64)
        if kind == "link":
            return event("device.linked", at=at, device=self.mac(store), lead=uid)
        if kind == "visit":
            start = self.now - datetime.timedelta(days=rng.choice([rng.uniform(0, 40), rng.uniform(0, 200)]),
                                                  seconds=rng.randrange(86400))
            end = start + datetime.timedelta(minutes=rng.randrange(1, 180))
            return event("visit.closed", at=at, device=self.mac(store), start=start.isoformat(sep=" ", timespec="seconds"),
                         end=end.isoformat(sep=" ", timespec="seconds"), passerby=rng.random() < 0.1)
        if kind == "restrict":
            return event("lead.restricted", at=at, lead=uid, restricted=rng.random() < 0.5)
        if kind == "erase":
            return event("lead.erased", at=at, lead=uid, verified=rng.random() < 0.5)
        if kind == "devices":
            return event("devices.erased", at=at, devices=[self.mac(store)])
        into = self.lead(store)
        return event("lead.merged", at=at, lead=uid, into=into) if into != uid else event("erase.ack", at=at, lead=uid)

    def step(self):
        rng = self.rng
        what = rng.choices(["batch", "time", "api-erase", "purge"], [12, 3, 0.15, 0.3])[0]
        if what == "batch":
            store = rng.choice(list(self.keys))
            events = [self.random_event(store) for _ in range(rng.randrange(1, 8))]
            assert post_batch(self.client, store, self.keys[store], events).status_code == 200
        elif what == "time":
            self.now += datetime.timedelta(days=rng.choice([1, 7, 20, 45]), hours=rng.randrange(24))
        else:
            with database.connection_context():
                followed = "JOIN chain_stat s ON s.person_id = p.id" if rng.random() < 0.7 else ""  # mostly members
                live = [r[0] for r in database.execute_sql(f"SELECT id FROM person p {followed} WHERE erased_at IS NULL ORDER BY id")]
                if not live:
                    return
                person = rng.choice(live)
                if what == "purge":
                    with database.atomic():
                        purge_person(database.cursor(), person, self.now)
            if what == "api-erase":
                assert self.client.post(f"/v1/people/{person}/erase", headers=auth(self.tokens["erase"])).status_code == 200

    def check(self):
        served = self.client.get("/v1/segments", headers=auth(self.tokens["read"])).json["segments"]
        with database.connection_context():
            cur = database.cursor()
            want, found, consents = expected(cur, self.now)
            assert served == want
            for key in BUILTIN:
                for kind, purposes in EXPORT_PURPOSES.items():
                    left_out = sum(any(p in consents.get(i, ({}, []))[1] for p in purposes) for i in found[key])
                    assert chainstat.members(cur, key, self.now, purposes) == (found[key], left_out), (key, kind)
            cur.execute(f"SELECT {', '.join(chainstat.COLUMNS)} FROM chain_stat ORDER BY person_id")
            kept = cur.fetchall()
            assert kept == sorted(chainstat._scan(cur, "TRUE", []))  # the rows equal a rebuild's
        key = self.rng.choice(list(BUILTIN))
        answer = self.client.get(f"/v1/segments/{key}/export/csv", headers=auth(self.tokens["export"]))
        assert answer.status_code == 200
        assert answer.headers[LEFT_OUT_HEADER] == str(
            sum(any(p in consents.get(i, ({}, []))[1] for p in EXPORT_PURPOSES["csv"]) for i in found[key]))
        return sum(len(ids) for ids in found.values())


@pytest.mark.parametrize("seed", range(10))
def test_kept_segments_equal_the_scan_after_random_histories(central_app, stores, tokens, monkeypatch, seed):
    import central.api as api
    with central_app.app_context(), database.connection_context():
        keys = {**stores, "dn-03": add_store("dn-03", "Store dn-03", central_app.extensions["central"]["vault"])}
    chain = Chain(random.Random(seed), central_app.test_client(), keys, tokens)
    monkeypatch.setattr(api, "utcnow", lambda: chain.now)
    seen = 0
    for _ in range(80):
        chain.step()
        seen += chain.check()
    assert seen > 0  # the histories put people in segments (not a comparison of empty sets)


def test_time_alone_moves_a_person_from_returning_to_lapsed_to_lost(central_app, stores, tokens, monkeypatch):
    """No event after the visits: the same kept row reads differently as days pass."""
    import central.api as api
    from tests.central.test_ingest import lead
    now = [datetime.datetime(2026, 11, 23, 12, 0)]
    monkeypatch.setattr(api, "utcnow", lambda: now[0])
    client = central_app.test_client()
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", phone="+84912345678"), event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
        event("consent.recorded", lead="L1", purpose="visit_analytics", granted=True),
        *[event("visit.closed", device="3c:22:fb:00:00:01", start=f"2026-11-{d:02d} 10:00:00",
                end=f"2026-11-{d:02d} 10:45:00", passerby=False) for d in (2, 20)]]).status_code == 200

    def segments():
        body = client.get("/v1/segments", headers=auth(tokens["read"])).json["segments"]
        return {s["key"] for s in body if s["members"]}

    assert segments() == {"returning"}
    now[0] += datetime.timedelta(days=40)
    assert segments() == {"lapsed"}
    now[0] += datetime.timedelta(days=60)
    assert segments() == {"lost"}


def test_the_migration_fills_the_rows_from_the_visits_already_kept(central_app, stores, tokens, central_settings):
    """A central upgraded with visits in it: migration 0007 (its backfill, the full rebuild) gives the
    rows the batches kept."""
    from playhouse.migrations import Runner

    from central.db import MIGRATIONS_DIR
    from tests.central.test_ingest import lead
    client = central_app.test_client()
    assert post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", phone="+84912345678"), event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
        event("consent.recorded", lead="L1", purpose="visit_analytics", granted=True),
        event("visit.closed", device="3c:22:fb:00:00:01", start="2026-11-20 10:00:00", end="2026-11-20 10:45:00",
              passerby=False)]).status_code == 200
    with database.connection_context():
        before = database.execute_sql("SELECT * FROM chain_stat").fetchall()
        assert len(before) == 1
        runner = Runner(database, directory=str(MIGRATIONS_DIR), schema=central_settings.central_schema)
        runner.down(target="0007_chain_stat")  # back to before 0007 (and the migrations after it): no table
        assert database.execute_sql("SELECT to_regclass('chain_stat')").fetchone()[0] is None
        runner.up()
        assert database.execute_sql("SELECT * FROM chain_stat").fetchall() == before
        with database.atomic():
            assert chainstat.rebuild(database.cursor(), chunk=1) == 1  # in ranges of one id: the same
        assert database.execute_sql("SELECT * FROM chain_stat").fetchall() == before


def test_a_rule_field_without_sql_is_refused_loudly():
    with pytest.raises(ValueError, match="no SQL for the rule field"):
        chainstat.predicate("lost", {"recency_min_days": 90, "favourite_colour": "red"}, START)


def test_two_stores_pushing_one_persons_visits_at_once_keep_the_row_right(central_app, stores, central_server):
    """Two stores' batches touch the same person in parallel (two server workers): each computes the
    row after the other's commit (the per-person lock), so the kept row counts every visit."""
    import threading
    from tests.central.test_concurrency import post
    from tests.central.test_verified_identity import ALICE, consent, upsert
    client = central_app.test_client()
    for store, uid in (("hcm-01", "A1"), ("hn-02", "B1")):
        assert post_batch(client, store, stores[store], [
            upsert(uid, ALICE, email_verified=True), consent(uid, "visit_analytics"),
            event("device.linked", device="3c:22:fb:00:00:0a", lead=uid)]).status_code == 200
    statuses = []

    def push(store):
        for n in range(10):
            day = datetime.datetime(2026, 11, 1) + datetime.timedelta(hours=n)
            statuses.append(post(central_server, store, stores[store], [
                event("visit.closed", device="3c:22:fb:00:00:0a", start=str(day + datetime.timedelta(minutes=m)),
                      end=str(day + datetime.timedelta(minutes=m + 1)), passerby=False) for m in range(20)]))

    threads = [threading.Thread(target=push, args=(store,)) for store in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 20
    with database.connection_context():
        cur = database.cursor()
        cur.execute("SELECT visits FROM chain_stat")
        assert cur.fetchall() == [(400,)]
        cur.execute(f"SELECT {', '.join(chainstat.COLUMNS)} FROM chain_stat ORDER BY person_id")
        assert cur.fetchall() == sorted(chainstat._scan(cur, "TRUE", []))


def kept_equal_rebuild():
    with database.connection_context():
        cur = database.cursor()
        cur.execute(f"SELECT {', '.join(chainstat.COLUMNS)} FROM chain_stat ORDER BY person_id")
        kept = cur.fetchall()
        assert kept == sorted(chainstat._scan(cur, "TRUE", []))
        return kept


@pytest.mark.parametrize("seed", range(4))
def test_visit_only_batches_merged_into_the_rows_equal_a_rebuild(central_app, stores, seed):
    """Batches of visits alone are merged into the kept rows (chainstat._merge), not recomputed: in
    any time order, with microseconds, long and short dwells, passers-by, devices of no one, a batch
    resent whole (by seq and by uid) or in part, the rows equal a rebuild's after every batch."""
    from tests.central.test_verified_identity import consent, upsert
    rng = random.Random(seed)
    client = central_app.test_client()
    macs = {store: [f"3c:22:fb:01:{n:02x}:{d:02x}" for d in range(6)] for n, store in enumerate(stores)}
    for n, (store, key) in enumerate(stores.items()):
        people = []
        for d in range(5):  # the sixth device is linked to no one
            uid = f"V{n}{d}"
            people += [upsert(uid, EMAILS[d], email_verified=True), event("device.linked", device=macs[store][d], lead=uid)]
            if d != 4:  # the fifth person gave no visit_analytics consent: never a row
                people.append(consent(uid, "visit_analytics"))
        assert post_batch(client, store, key, people).status_code == 200
    seq = dict.fromkeys(stores, 0)
    sent: dict[str, list] = {store: [] for store in stores}
    merged_rows = 0
    for _ in range(40):
        store = rng.choice(list(stores))
        if sent[store] and rng.random() < 0.2:  # resent: a lost answer, or a batch overlapping the last
            events = rng.choice([sent[store][-1], sent[store][-1][rng.randrange(len(sent[store][-1])):]])
        else:
            events = []
            for _ in range(rng.randrange(1, 12)):
                start = START + datetime.timedelta(days=rng.uniform(-300, 300), microseconds=rng.randrange(10**6))
                end = start + datetime.timedelta(seconds=rng.choice([0, 1, 59, 3600, rng.uniform(0, 10**6)]))
                seq[store] += 1
                e = event("visit.closed", device=rng.choice(macs[store]), start=str(start), end=str(end),
                          passerby=rng.random() < 0.15)
                if rng.random() < 0.8:  # else an event of an appliance not yet upgraded (claimed by uid)
                    e["seq"] = seq[store]
                events.append(e)
            events.sort(key=lambda e: e.get("seq", 0))  # seqs grow in a batch; events without one go first
            sent[store].append(events)
        before = kept_equal_rebuild()
        assert post_batch(client, store, stores[store], events).status_code == 200
        after = kept_equal_rebuild()
        merged_rows += sum(1 for a in after for b in before if a[0] == b[0] and a != b)
    assert merged_rows > 0  # rows held before a batch were changed by it: the merge ran


def test_a_merged_dwell_average_is_the_rebuilds_to_the_bit(central_app, stores):
    """Dwell averages that are not whole: the sum behind the kept average is recovered exactly, so
    the merged row equals a recomputed one (one visit after another, thirty times)."""
    from tests.central.test_verified_identity import ALICE, consent, upsert
    client = central_app.test_client()
    key = stores["hcm-01"]
    assert post_batch(client, "hcm-01", key, [
        upsert("A1", ALICE, email_verified=True), consent("A1", "visit_analytics"),
        event("device.linked", device="3c:22:fb:00:00:0b", lead="A1")]).status_code == 200
    for n in range(30):
        start = START + datetime.timedelta(hours=n, microseconds=n * 7919)
        end = start + datetime.timedelta(seconds=1000 + n * 13.371717)
        assert post_batch(client, "hcm-01", key, [event("visit.closed", device="3c:22:fb:00:00:0b", start=str(start),
                                                        end=str(end), passerby=False)]).status_code == 200
        (row,) = kept_equal_rebuild()
        assert row[5] == n + 1
