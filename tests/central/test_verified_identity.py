"""Issue 11 at the central store: people merge only on verified contacts, an erasure reaches the
chain only from a store where the person is verified, records folded at a store fold here, and a
marketing consent counts only with its channel verified (double opt-in). Real PostgreSQL."""
import datetime
import hashlib

import pytest

from central.db import database
from tests.central.fixtures import event, post_batch
from tests.central.test_api import auth, tokens  # noqa: F401  (the fixture)
from tests.central.test_ingest import IDX, counts

ALICE, ALICE_PHONE, MALLORY_PHONE = "alice@example.com", "+84911111111", "+84922222222"
IDX.update({k: hashlib.sha256(k.encode()).hexdigest() for k in (ALICE, ALICE_PHONE, MALLORY_PHONE)})
MARKETING = ("marketing_email", "marketing_sms", "ad_audiences")


def upsert(uid, email=None, phone=None, name=None, email_verified=None, phone_verified=None, **extra):
    """lead.upserted as a store sends it; a flag left None is left out (an older store's event). The
    person agreed to chain sharing unless `chain_sharing` says otherwise (merging needs it, issue 15)."""
    extra.setdefault("chain_sharing", True)
    data = dict(lead=uid, email=email, phone=phone, name=name, language="vi",
                email_index=IDX[email] if email else None, phone_index=IDX[phone] if phone else None, **extra)
    for key, flag in (("email_verified", email_verified), ("phone_verified", phone_verified)):
        if flag is not None:
            data[key] = flag
    return event("lead.upserted", **data)


def consent(uid, purpose, granted=True):
    return event("consent.recorded", lead=uid, purpose=purpose, granted=granted, policy_sha256="c" * 64)


def one(sql, *args):
    with database.connection_context():
        return database.execute_sql(sql, args).fetchone()


def rows(sql, *args):
    with database.connection_context():
        return database.execute_sql(sql, args).fetchall()


def person_of(store, lead_uid):
    row = one("SELECT person_id FROM store_lead WHERE store_id = %s AND lead_uid = %s", store, lead_uid)
    return row[0] if row else None


def snapshot(person):
    """Everything the central holds of a person, to compare before and after."""
    return {"person": one("SELECT email_index, phone_index, email_enc, phone_enc, name_enc, email_verified_at, "
                          "phone_verified_at, erased_at FROM person WHERE id = %s", person),
            "leads": rows("SELECT store_id, lead_uid FROM store_lead WHERE person_id = %s ORDER BY 1, 2", person),
            "consents": rows("SELECT store_id, purpose, granted FROM consent_event WHERE person_id = %s ORDER BY id", person),
            "devices": rows("SELECT store_id, mac FROM device WHERE person_id = %s ORDER BY 1, 2", person),
            "visits": one("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.person_id = %s", person)}


def name_of(central_app, person):
    enc = one("SELECT name_enc FROM person WHERE id = %s", person)[0]
    return central_app.extensions["central"]["vault"].decrypt(bytes(enc), "person.name") if enc else None


@pytest.fixture
def alice_at_a(central_app, stores):
    """Alice proved her email and phone at store A; she agreed to email marketing; one visit."""
    client = central_app.test_client()
    response = post_batch(client, "hcm-01", stores["hcm-01"], [
        upsert("A1", ALICE, ALICE_PHONE, "Alice", email_verified=True, phone_verified=True),
        consent("A1", "marketing_email"), event("device.linked", device="3c:22:fb:00:00:0a", lead="A1"),
        event("visit.closed", device="3c:22:fb:00:00:0a", start="2026-11-20 10:00:00", end="2026-11-20 10:30:00",
              passerby=False)])
    assert response.status_code == 200, response.json
    return client, person_of("hcm-01", "A1")


@pytest.mark.parametrize("flags", [{"email_verified": False, "phone_verified": False}, {}], ids=["false", "missing"])
def test_the_attack_across_two_stores_fails_at_every_step(central_app, stores, alice_at_a, flags):
    client, alice = alice_at_a
    before = snapshot(alice)
    assert before["person"][0] == IDX[ALICE] and before["person"][5] is not None  # verified, held
    # Mallory at store B: alice's email (and its index, as a lying store would send), his phone,
    # his name, every marketing box; not proved. An older store sends no flags at all.
    claim = post_batch(client, "hn-02", stores["hn-02"], [
        upsert("B1", ALICE, MALLORY_PHONE, "Mallory", **flags), *(consent("B1", p) for p in MARKETING),
        event("device.linked", device="00:1a:11:00:00:0b", lead="B1")])
    assert claim.status_code == 200, claim.json
    mallory = person_of("hn-02", "B1")
    assert mallory != alice
    assert snapshot(alice) == before and name_of(central_app, alice) == "Alice"
    assert one("SELECT email_index, phone_index, email_enc, phone_enc FROM person WHERE id = %s", mallory) == \
        (None, None, None, None)  # an unproved contact is neither stored nor indexed
    assert name_of(central_app, mallory) == "Mallory"
    assert rows("SELECT DISTINCT store_id FROM consent_event WHERE person_id = %s", alice) == [("hcm-01",)]
    # Mallory's erasure from B: its own claim only, nothing of alice, no command to A.
    erased = post_batch(client, "hn-02", stores["hn-02"], [event("lead.erased", lead="B1", verified=False)])
    assert erased.json["commands"] == []
    assert snapshot(alice) == before
    assert one("SELECT count(*) FROM erase_command")[0] == 0
    assert post_batch(client, "hcm-01", stores["hcm-01"], []).json["commands"] == []
    assert one("SELECT erased_at IS NOT NULL, name_enc FROM person WHERE id = %s", mallory) == (True, None)
    assert one("SELECT count(*) FROM device WHERE store_id = 'hn-02'")[0] == 0
    # Alice herself at B, proved by a code: one person.
    proved = post_batch(client, "hn-02", stores["hn-02"], [upsert("B2", ALICE, name="Alice", email_verified=True)])
    assert proved.status_code == 200 and person_of("hn-02", "B2") == alice
    assert snapshot(alice)["person"][:2] == (IDX[ALICE], IDX[ALICE_PHONE])
    # Her verified erasure at B reaches A.
    gone = post_batch(client, "hn-02", stores["hn-02"], [event("lead.erased", lead="B2", verified=True)])
    assert gone.json["commands"] == []
    assert one("SELECT erased_at IS NOT NULL, email_index, name_enc FROM person WHERE id = %s", alice) == (True, None, None)
    assert post_batch(client, "hcm-01", stores["hcm-01"], []).json["commands"] == [{"erase_lead": "A1"}]


def test_an_erasure_that_does_not_say_verified_takes_only_that_stores_part(central_app, stores, alice_at_a):
    """A merged person, erased by an older store (no flag): the other store's part stays whole."""
    client, alice = alice_at_a
    post_batch(client, "hn-02", stores["hn-02"], [
        upsert("B2", ALICE, email_verified=True), consent("B2", "marketing_sms"),
        event("device.linked", device="00:1a:11:00:00:0c", lead="B2"), event("segment.members", segment="new", members=["B2"]),
        event("visit.closed", device="00:1a:11:00:00:0c", start="2026-11-21 10:00:00", end="2026-11-21 10:20:00",
              passerby=False)])
    assert person_of("hn-02", "B2") == alice
    erased = post_batch(client, "hn-02", stores["hn-02"], [event("lead.erased", lead="B2")])
    assert erased.status_code == 200 and erased.json["commands"] == []
    after = snapshot(alice)
    assert after["person"][0] == IDX[ALICE] and after["person"][7] is None and name_of(central_app, alice) == "Alice"
    assert after["leads"] == [("hcm-01", "A1")]
    assert after["devices"] == [("hcm-01", "3c:22:fb:00:00:0a")] and after["visits"] == (1,)
    assert after["consents"] == [("hcm-01", "marketing_email", True)]  # B's consent does not stay on alice
    part = person_of("hn-02", "B2")
    assert snapshot(part)["consents"] == [("hn-02", "marketing_sms", True)]  # kept as proof, on an erased person
    assert one("SELECT erased_at IS NOT NULL FROM person WHERE id = %s", part) == (True,)
    assert one("SELECT count(*) FROM segment_member")[0] == 0
    assert one("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.store_id = 'hn-02'")[0] == 0
    assert one("SELECT count(*) FROM erase_command")[0] == 0


def test_verified_true_from_a_store_that_never_proved_the_person_is_not_chain_wide(central_app, stores, alice_at_a):
    """Store B's lead was merged with alice before issue 11 (by an unproved index); B now says its
    erasure is verified, but B never proved a contact of hers: only B's part goes."""
    client, alice = alice_at_a
    with database.connection_context():
        database.execute_sql("INSERT INTO store_lead (store_id, lead_uid, person_id) VALUES ('hn-02', 'B9', %s)", (alice,))
    before = snapshot(alice)
    erased = post_batch(client, "hn-02", stores["hn-02"], [event("lead.erased", lead="B9", verified=True)])
    assert erased.status_code == 200 and one("SELECT count(*) FROM erase_command")[0] == 0
    assert snapshot(alice) == dict(before, leads=[("hcm-01", "A1")])
    assert one("SELECT erased_at IS NOT NULL FROM person p JOIN store_lead s ON s.person_id = p.id "
               "WHERE s.lead_uid = 'B9'") == (True,)


def test_a_claim_proved_later_folds_into_the_person_it_proved(central_app, stores, alice_at_a):
    client, alice = alice_at_a
    post_batch(client, "hn-02", stores["hn-02"], [upsert("B1", ALICE, name="Al", email_verified=False),
                                                  consent("B1", "ad_audiences"),
                                                  event("device.linked", device="00:1a:11:00:00:0d", lead="B1")])
    claim = person_of("hn-02", "B1")
    assert claim != alice
    post_batch(client, "hn-02", stores["hn-02"], [upsert("B1", ALICE, name="Al", email_verified=True)])
    assert person_of("hn-02", "B1") == alice
    assert one("SELECT count(*) FROM person WHERE id = %s", claim) == (0,)
    after = snapshot(alice)
    assert ("hn-02", "ad_audiences", True) in after["consents"] and ("hn-02", "00:1a:11:00:00:0d") in after["devices"]


def test_a_contact_held_by_another_verified_person_stays_with_them(central_app, stores, alice_at_a):
    """A verified person whose lead now proves a contact someone else proved first: no merge, as before."""
    client, alice = alice_at_a
    post_batch(client, "hn-02", stores["hn-02"], [upsert("B3", phone=MALLORY_PHONE, phone_verified=True)])
    other = person_of("hn-02", "B3")
    post_batch(client, "hn-02", stores["hn-02"], [upsert("B3", ALICE, MALLORY_PHONE, email_verified=True, phone_verified=True)])
    assert person_of("hn-02", "B3") == other != alice
    assert one("SELECT email_index, phone_index FROM person WHERE id = %s", other) == (None, IDX[MALLORY_PHONE])
    assert one("SELECT email_index FROM person WHERE id = %s", alice) == (IDX[ALICE],)


def test_an_index_from_before_verification_gives_way_to_a_proof(central_app, stores):
    """People stored before issue 11 hold indexes nobody proved: they merge nobody and yield them."""
    with database.connection_context():
        database.execute_sql("INSERT INTO person (email_index, language, created_at, updated_at) "
                             "VALUES (%s, 'vi', now(), now())", (IDX[ALICE],))
    legacy = one("SELECT id FROM person")[0]
    post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], [upsert("A1", ALICE, email_verified=True)])
    alice = person_of("hcm-01", "A1")
    assert alice != legacy
    assert one("SELECT email_index FROM person WHERE id = %s", legacy) == (None,)
    assert one("SELECT email_index, email_verified_at IS NOT NULL FROM person WHERE id = %s", alice) == (IDX[ALICE], True)


def folded_batch():
    """Store B: the proven record P1 (alice) and a claim record C1 with a consent and a device,
    folded into P1, all in one batch (leads, then links and consents, then the merge)."""
    return [upsert("P1", ALICE, name="Alice", email_verified=True),
            upsert("C1", ALICE, name="Mallory?", email_verified=False),
            consent("C1", "marketing_sms"), event("device.linked", device="00:1a:11:00:00:0e", lead="C1"),
            event("visit.closed", device="00:1a:11:00:00:0e", start="2026-11-21 10:00:00", end="2026-11-21 10:20:00",
                  passerby=False),
            event("lead.merged", lead="C1", into="P1")]


def test_lead_merged_moves_the_claim_onto_the_proven_person_exactly_once(central_app, stores, alice_at_a):
    client, alice = alice_at_a
    batch = folded_batch()
    first = post_batch(client, "hn-02", stores["hn-02"], batch)
    assert first.status_code == 200 and first.json["applied"] == len(batch)
    assert person_of("hn-02", "P1") == person_of("hn-02", "C1") == alice
    state = snapshot(alice)
    assert ("hn-02", "marketing_sms", True) in state["consents"] and ("hn-02", "00:1a:11:00:00:0e") in state["devices"]
    assert state["visits"] == (2,)
    assert one("SELECT count(*) FROM person")[0] == 1  # the claim's person is gone
    assert name_of(central_app, alice) == "Alice"
    tables = counts()
    again = post_batch(client, "hn-02", stores["hn-02"], batch)
    assert again.json["applied"] == 0 and again.json["duplicates"] == len(batch)
    assert counts() == tables and snapshot(alice) == state


def test_lead_merged_in_a_later_batch_and_before_the_proven_record_arrives(central_app, stores, alice_at_a):
    client, alice = alice_at_a
    post_batch(client, "hn-02", stores["hn-02"], [upsert("C1", ALICE, email_verified=False), consent("C1", "marketing_email"),
                                                  event("device.linked", device="00:1a:11:00:00:0f", lead="C1")])
    # The merge names a record the central has not seen yet: remembered, then filled in.
    post_batch(client, "hn-02", stores["hn-02"], [event("lead.merged", lead="C1", into="P9")])
    waiting = person_of("hn-02", "P9")
    assert person_of("hn-02", "C1") == waiting != alice
    assert snapshot(waiting)["devices"] == [("hn-02", "00:1a:11:00:00:0f")]
    post_batch(client, "hn-02", stores["hn-02"], [upsert("P9", ALICE, email_verified=True)])
    assert person_of("hn-02", "P9") == person_of("hn-02", "C1") == alice
    assert ("hn-02", "marketing_email", True) in snapshot(alice)["consents"]
    assert one("SELECT count(*) FROM person")[0] == 1


def test_a_merge_leaves_a_person_other_stores_know(central_app, stores, alice_at_a):
    """A store folds a record that is merged with another store's: only that store's part moves."""
    client, alice = alice_at_a
    post_batch(client, "hn-02", stores["hn-02"], [upsert("B2", ALICE, email_verified=True), consent("B2", "marketing_sms"),
                                                  upsert("B3", phone=MALLORY_PHONE, phone_verified=True),
                                                  event("lead.merged", lead="B2", into="B3")])
    other = person_of("hn-02", "B3")
    assert person_of("hn-02", "B2") == other != alice
    assert snapshot(alice)["consents"] == [("hcm-01", "marketing_email", True)]
    assert snapshot(other)["consents"] == [("hn-02", "marketing_sms", True)]
    assert snapshot(alice)["leads"] == [("hcm-01", "A1")]


def test_double_opt_in_at_the_read_api(central_app, stores, tokens, monkeypatch):  # noqa: F811
    import central.api as api
    monkeypatch.setattr(api, "utcnow", lambda: datetime.datetime(2026, 11, 23, 12, 0))
    client = central_app.test_client()

    def visit(mac):
        return event("visit.closed", device=mac, start="2026-11-20 10:00:00", end="2026-11-20 10:30:00", passerby=False)

    post_batch(client, "hcm-01", stores["hcm-01"], [
        # All three agreed to visit analytics (chain segments follow no one else, issue 15).
        *(consent(uid, "visit_analytics") for uid in ("L1", "M1", "X1")),
        # Lan proved her phone only; an older store also sends her email, unproved.
        upsert("L1", "lan@example.com", ALICE_PHONE, "Lan", phone_verified=True), *(consent("L1", p) for p in MARKETING),
        event("device.linked", device="3c:22:fb:00:00:01", lead="L1"), visit("3c:22:fb:00:00:01"),
        # Minh proved his email.
        upsert("M1", "minh@example.com", name="Minh", email_verified=True), consent("M1", "marketing_email"),
        event("device.linked", device="3c:22:fb:00:00:02", lead="M1"), visit("3c:22:fb:00:00:02"),
        # A claim: nothing proved, every box ticked.
        upsert("X1", ALICE, MALLORY_PHONE, "X", email_verified=False, phone_verified=False),
        *(consent("X1", p) for p in MARKETING), event("device.linked", device="3c:22:fb:00:00:03", lead="X1"),
        visit("3c:22:fb:00:00:03")])
    page = {p["name"]: p for p in client.get("/v1/people", headers=auth(tokens["read"])).json["people"]}
    lan, minh = page["Lan"], page["Minh"]
    assert "X" not in page  # the claim: no consent of it counts, so it is not served (issue 15)
    assert (lan["email"], lan["phone"], lan["email_verified_at"]) == (None, ALICE_PHONE, None)
    assert lan["phone_verified_at"] == "2026-11-20T10:00:00"
    assert lan["consents"] == {"marketing_sms": True, "ad_audiences": True, "visit_analytics": True}
    assert lan["awaiting_verification"] == ["marketing_email"]
    assert minh["consents"] == {"marketing_email": True, "visit_analytics": True} and minh["awaiting_verification"] == []
    segments = {s["key"]: s for s in client.get("/v1/segments", headers=auth(tokens["read"])).json["segments"]}
    assert segments["new"]["members"] == 3
    assert segments["new"]["consented"] == {"marketing_email": 1, "marketing_sms": 1, "ad_audiences": 1}
    assert segments["new"]["left_out_unverified"] == {"marketing_email": 2, "marketing_sms": 1, "ad_audiences": 1}
    csv = client.get("/v1/segments/new/export/csv", headers=auth(tokens["export"]))
    assert csv.get_data(as_text=True).splitlines() == ["email,phone,name,language", f",{ALICE_PHONE},Lan,vi",
                                                       "minh@example.com,,Minh,vi"]
    assert csv.headers[api.LEFT_OUT_HEADER] == "2"  # Lan's email consent, the claim's
    meta = client.get("/v1/segments/new/export/meta", headers=auth(tokens["export"]))
    assert meta.get_data(as_text=True).splitlines() == ["email,phone", f",{hashlib.sha256(ALICE_PHONE[1:].encode()).hexdigest()}"]
    assert meta.headers[api.LEFT_OUT_HEADER] == "1"


def malformed(topic, **data):
    return [{"uid": "e1", "topic": topic, "at": "2026-11-20T10:00:00", "data": data}]


@pytest.mark.parametrize("events,message", [
    (malformed("lead.upserted", lead="L1", language="vi", email_verified="yes"), "event 0: invalid email_verified"),
    (malformed("lead.upserted", lead="L1", language="vi", phone_verified=1), "event 0: invalid phone_verified"),
    (malformed("lead.erased", lead="L1", verified="true"), "event 0: invalid verified"),
    (malformed("lead.merged", lead="L1"), "event 0: invalid into"),
    (malformed("lead.merged", lead="L1", into="L1"), "event 0: invalid into"),
    (malformed("lead.merged", lead="L1", into="x" * 65), "event 0: invalid into"),
    (malformed("lead.merged", into="L2"), "event 0: invalid lead"),
])
def test_malformed_verification_fields_refuse_the_batch(central_app, stores, events, message):
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], [upsert("A1", ALICE, email_verified=True)]
                          + [dict(e, uid="e2") for e in events])
    assert response.status_code == 400 and response.json["error"] == message.replace("event 0", "event 1")
    assert counts()["person"] == 0 and counts()["applied_event"] == 0


def test_a_central_from_before_gets_the_new_columns_and_keeps_its_people(pg_dsn, schema):
    from playhouse.migrations import Runner
    from playhouse.schema_diff import diff_models

    from central.db import MIGRATIONS_DIR, init_db
    from central.models import MODELS
    init_db(pg_dsn, schema, migrate=False)
    with database.connection_context():
        runner = Runner(database, directory=str(MIGRATIONS_DIR), schema=schema)
        runner.up(target="0001_initial")
        database.execute_sql("INSERT INTO person (email_index, language, created_at, updated_at) "
                             "VALUES (%s, 'vi', now(), now())", (IDX[ALICE],))
        runner.up()
        assert database.execute_sql("SELECT email_index, email_verified_at FROM person").fetchall() == [(IDX[ALICE], None)]
        # peewee reads the indexes of plain tables only: the partitioned visit table is compared in
        # tests/central/test_visit_partitions.py.
        assert not diff_models(database, [m for m in MODELS if m.__name__ != "Visit"]), "models and migrations disagree"
