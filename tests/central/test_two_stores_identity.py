"""Issue 11's attack across two stores, end to end: two real appliances (their own data dirs, keys
and SQLite files), real sign-ins through the portal's routes, codes read where a local provider
received them (aiosmtpd, a server speaking eSMS.vn's API), pushes through portal.sync to a real
`footfall central serve` on a throwaway PostgreSQL, and the central's read API with a token.

The appliance database is one global peewee proxy per process: the two boxes run in this process
one after another, each bound to its own file when it is used (`Appliance.use`), as `create_app`
binds it when a box starts.
"""
from __future__ import annotations

import gzip
import http.client
import json

import pytest

from central import add_token
from central.db import database as central_db
from portal import sync
from portal.core import wire
from portal.app import create_app
from portal.config import database_path, key_path, load_settings
from portal.db import database, init_db
from portal.gateway.null import NullGateway
from portal.identity import Keys, Vault, load_or_create_keys
from portal.models import Consent, Device, Lead, OutboxEvent
from tests.central.test_sync_e2e import FaultyProxy, central_server, enroll_store  # noqa: F401  (the fixture)
from tests.central.test_verified_identity import one, person_of, rows, snapshot
from tests.conftest import PORTAL_HOST
from tests.portal.test_verified_identity import (ALICE_E164, ALICE_EMAIL, ALICE_PHONE, Phone, age_codes,  # noqa: F401
                                                 providers)

MALLORY_PHONE, MALLORY_E164 = "0987654321", "+84987654321"
EVERY_BOX = ["marketing_email", "marketing_sms", "ad_audiences"]
SHARING = ["visit_analytics", "chain_sharing"]  # merging across stores needs chain_sharing (issue 15): an attacker ticks it too


class Recorder(FaultyProxy):
    """Between the appliances and the central store: forwards every batch, keeps what it carried."""

    BEHAVIOURS = ("forward",)

    def __init__(self, upstream_port: int) -> None:
        self.batches: list[tuple[str, bytes]] = []  # (store, the batch's JSON as it travelled)
        super().__init__(upstream_port)

    def forward(self, path, headers, body):
        self.batches.append((headers.get(wire.STORE_HEADER, ""), gzip.decompress(body)))
        return super().forward(path, headers, body)

    def sent_by(self, store_id: str) -> list[dict]:
        return [e for store, raw in self.batches if store == store_id for e in json.loads(raw)["events"]]

    def raw_from(self, store_id: str) -> bytes:
        return b"".join(raw for store, raw in self.batches if store == store_id)


class Appliance:
    """One store's box, enrolled at the central store, then restarted (as `footfall sync enroll` says;
    `restart=False`: the portal still runs on the vault it started with)."""

    active: "Appliance | None" = None

    def __init__(self, root, store_id: str, providers, central_settings, proxy: Recorder, restart: bool = True) -> None:
        self.store_id, self.providers, self.proxy = store_id, providers, proxy
        self.settings = load_settings(
            environ={}, data_dir=str(root / store_id), portal_url=f"http://{PORTAL_HOST}", store_name=f"Cà Phê {store_id}",
            store_id=store_id, rate_limit_count=200, email_driver="smtp", smtp_host="127.0.0.1",
            smtp_port=providers["smtp"].port, smtp_security="none", smtp_from="wifi@shop.test", sms_driver="esms",
            esms_url=providers["esms"].url, esms_api_key="k", esms_secret_key="s", esms_brandname="CAPHE",
            zalo_driver="none")
        self.gateway = NullGateway()
        self._start()
        self.keys = enroll_store(central_settings, self.app, store_id)
        if restart:  # `footfall sync enroll`: "restart the portal afterwards" (its vault takes the chain's key)
            self._start()

    def _start(self) -> None:
        self.app = create_app(self.settings, gateway=self.gateway)
        self.app.config["TESTING"] = True
        Appliance.active = self

    def use(self) -> None:
        """Bind the process's database to this box's file, as create_app does when the box starts."""
        if Appliance.active is not self:
            database.close()
            init_db(database_path(self.settings), migrate=False, busy_timeout=self.settings.db_lock_wait_ms)
            Appliance.active = self

    @property
    def vault(self) -> Vault:
        return self.app.extensions["footfall"].vault

    def phone(self, n: int) -> "Visitor":
        return Visitor(self, n)

    def push(self) -> dict:
        """What the scheduler's push job does: drain the outbox to the central store, apply its commands."""
        self.use()
        keys = load_or_create_keys(key_path(self.settings))
        target = sync.Target(f"http://127.0.0.1:{self.proxy.port}", keys.store_id, keys.sync_key, allow_http=True)
        result = sync.drain(target, Vault(keys), self.gateway, keys.store_id, 100)
        assert "error" not in result and "skipped" not in result, result
        return result

    def lead_of(self, visitor: "Visitor") -> Lead | None:
        self.use()
        device = Device.get_or_none(Device.mac == visitor.mac)
        return device.lead if device and device.lead_id else None


class Visitor(Phone):
    """A device at one store: every request goes to that store's box."""

    def __init__(self, store: Appliance, n: int) -> None:
        super().__init__(store.app, f"10.0.0.{n}", store.providers)
        self.store = store

    def get(self, path, **kw):
        self.store.use()
        return super().get(path, **kw)

    def post(self, path, **kw):
        self.store.use()
        return super().post(path, **kw)

    def ask_code(self, kind: str, channel: str) -> str:
        """Ask for the code of this session's open claim of `kind` (past the resend cooldown); its uid."""
        claim = self.claim_on_page(kind=kind)
        self.store.use()
        age_codes()
        asked = self.post("/verify/send", data={"csrf_token": self.token("/my-data"), "claim": claim, "channel": channel})
        assert asked.status_code == 303, asked.get_data(as_text=True)[:500]
        return claim

    def erase_everything(self):
        return self.post("/my-data/erase", data={"csrf_token": self.token("/my-data"), "confirm": "yes"})


@pytest.fixture
def chain(tmp_path, providers, central_settings, central_server):  # noqa: F811
    proxy = Recorder(central_server)
    made: list[Appliance] = []
    try:
        made.append(Appliance(tmp_path, "hcm-01", providers, central_settings, proxy))
        made.append(Appliance(tmp_path, "hn-02", providers, central_settings, proxy))
        with central_db.connection_context():
            token = add_token("crm", ["people:read"])
        yield {"a": made[0], "b": made[1], "proxy": proxy, "port": central_server, "token": token}
    finally:
        proxy.close()
        database.close()
        Appliance.active = None


def api(chain, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", chain["port"], timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {chain['token']}"})
        response = conn.getresponse()
        assert response.status == 200, (path, response.status)
        return json.loads(response.read())
    finally:
        conn.close()


def everyone(chain) -> list[dict]:
    people, after = [], 0
    while after is not None:
        page = api(chain, f"/v1/people?limit=500&after={after}")
        people += page["people"]
        after = page["next"]
    return people


def chain_index(store: Appliance, kind: str, value: str) -> str:
    """The blind index the whole chain uses (the central's index key, adopted at enrollment)."""
    keys = store.keys
    return Vault(Keys(keys.encryption, keys.index, keys.secret)).blind_index(kind, value)


def appliance_snapshot(store: Appliance, lead_id: int) -> dict:
    store.use()
    lead = Lead.get_by_id(lead_id)
    return {"email": lead.email_index, "phone": lead.phone_index, "name": store.vault.decrypt(lead.name_enc, "lead.name"),
            "email_verified": lead.email_verified_at, "phone_verified": lead.phone_verified_at, "erased": lead.erased_at,
            "consents": [(c.purpose, c.granted) for c in Consent.select().where(Consent.lead == lead).order_by(Consent.id)],
            "devices": sorted(d.mac for d in Device.select().where(Device.lead == lead))}


def alice_proves_everything_at(store: Appliance) -> tuple[Visitor, Lead]:
    """Alice signs in with her email, phone and name, then enters the SMS code and the email code."""
    alice = store.phone(10)
    answer = alice.sign_in(email=ALICE_EMAIL, phone=ALICE_PHONE, name="Alice", marketing=["marketing_email"],
                           analytics=SHARING)
    assert answer.status_code == 303
    assert alice.enter(alice.wait_code("sms", ALICE_E164)).status_code == 303  # the phone's code went first
    claim = alice.ask_code("email", "email")
    assert alice.enter(alice.wait_code("email", ALICE_EMAIL), claim).status_code == 303
    lead = store.lead_of(alice)
    assert lead.email_verified_at is not None and lead.phone_verified_at is not None
    return alice, lead


# -- the attack of issue 11 across two stores ---------------------------------------------------------

@pytest.mark.parametrize("mallory_proves_his_phone", [True, False], ids=["own-phone-code", "no-code"])
def test_the_attack_across_two_stores_fails_end_to_end(chain, mallory_proves_his_phone):
    a, b, proxy = chain["a"], chain["b"], chain["proxy"]
    alice_email_index = chain_index(a, "email", ALICE_EMAIL)

    # Store A: alice proves her phone and her email; pushed.
    alice_a, alice_lead_a = alice_proves_everything_at(a)
    a.push()
    alice = person_of("hcm-01", alice_lead_a.uid)
    assert alice is not None
    held = one("SELECT email_index, phone_index, email_verified_at IS NOT NULL, phone_verified_at IS NOT NULL "
               "FROM person WHERE id = %s", alice)
    assert held == (alice_email_index, chain_index(a, "phone", ALICE_E164), True, True)
    before = snapshot(alice)
    api_before = api(chain, f"/v1/people/{alice}")
    # Served per consent (issue 15): her email (she agreed to emails), not her phone.
    assert (api_before["email"], api_before["phone"], api_before["name"]) == (ALICE_EMAIL, None, "Alice")
    at_a = appliance_snapshot(a, alice_lead_a.id)

    # Store B: mallory names alice's email, his own phone (he can read its code: he enters it, or
    # not), the name "Mallory" and every marketing box; pushed.
    mallory = b.phone(66)
    assert mallory.sign_in(email=ALICE_EMAIL, phone=MALLORY_PHONE, name="Mallory", marketing=EVERY_BOX,
                           analytics=SHARING).status_code == 303
    if mallory_proves_his_phone:
        assert mallory.enter(mallory.wait_code("sms", MALLORY_E164)).status_code == 303
    mallory_lead = b.lead_of(mallory)
    assert (mallory_lead.phone_verified_at is not None) is mallory_proves_his_phone
    assert mallory_lead.email_verified_at is None and mallory_lead.email_index == alice_email_index  # a claim, held at B
    b.push()
    assert ALICE_EMAIL.encode() not in proxy.raw_from("hn-02") and alice_email_index.encode() not in proxy.raw_from("hn-02")

    # At the central: alice's person unchanged; mallory is a person of his own, with his consents.
    mallory_person = person_of("hn-02", mallory_lead.uid)
    assert mallory_person is not None and mallory_person != alice
    assert snapshot(alice) == before and name_of_central(chain, alice) == "Alice"
    assert rows("SELECT DISTINCT store_id FROM consent_event WHERE person_id = %s", alice) == [("hcm-01",)]
    his_phone = chain_index(b, "phone", MALLORY_E164) if mallory_proves_his_phone else None
    assert one("SELECT email_index, email_enc, phone_index FROM person WHERE id = %s", mallory_person) == \
        (None, None, his_phone)
    assert sorted(p for p, in rows("SELECT purpose FROM consent_event WHERE person_id = %s AND granted", mallory_person)) == \
        sorted(["wifi_terms", *EVERY_BOX, *SHARING])
    # The read API: alice exactly as before; mallory's claim shows nowhere as alice.
    assert api(chain, f"/v1/people/{alice}") == api_before
    people = everyone(chain)
    assert [p["id"] for p in people if p["email"] == ALICE_EMAIL] == [alice]
    if mallory_proves_his_phone:
        assert [p["id"] for p in people if p["name"] == "Mallory"] == [mallory_person]
        shown = next(p for p in people if p["id"] == mallory_person)
        assert (shown["email"], shown["phone"]) == (None, MALLORY_E164)
        assert shown["consents"].get("marketing_email") is None  # double opt-in: counted for nobody
        assert shown["awaiting_verification"] == ["marketing_email"]
    else:  # nothing proved, so no consent of his counts: not served at all
        assert mallory_person not in [p["id"] for p in people]

    # Mallory erases "everything" at B (his own record: all his submission, or proved by his
    # phone's code): his person goes, not alice.
    answer = mallory.erase_everything()
    assert answer.status_code == 303 and "done=erased" in answer.headers["Location"]
    b.use()
    erased = [json.loads(e.payload) for e in OutboxEvent.select().where(OutboxEvent.topic == "lead.erased")]
    assert erased == [{"lead": mallory_lead.uid, "verified": mallory_proves_his_phone}]
    assert b.push()["commands"] == 0
    assert one("SELECT erased_at IS NOT NULL FROM person WHERE id = %s", mallory_person) == (True,)
    assert snapshot(alice) == before and api(chain, f"/v1/people/{alice}") == api_before
    assert one("SELECT count(*) FROM erase_command")[0] == 0
    # Store A asks the central store for commands: none; alice is whole there.
    assert a.push()["commands"] == 0
    assert appliance_snapshot(a, alice_lead_a.id) == at_a
    assert alice_a.mac in a.gateway.grants

    # Alice herself at B, on a new device: her email, and its code. Before the code B sends
    # nothing of her email; after it, her B record joins her person at the central store.
    alice_b = b.phone(11)
    assert alice_b.sign_in(email=ALICE_EMAIL, name="", analytics=SHARING).status_code == 303
    b.push()
    assert ALICE_EMAIL.encode() not in proxy.raw_from("hn-02")
    lead_b = b.lead_of(alice_b)
    assert person_of("hn-02", lead_b.uid) != alice
    assert alice_b.enter(alice_b.wait_code("email", ALICE_EMAIL, after=1)).status_code == 303
    b.push()
    lead_b = b.lead_of(alice_b)
    assert person_of("hn-02", lead_b.uid) == alice
    joined = snapshot(alice)
    assert ("hn-02", lead_b.uid) in joined["leads"] and ("hcm-01", alice_lead_a.uid) in joined["leads"]
    assert joined["person"][:2] == before["person"][:2] and name_of_central(chain, alice) == "Alice"
    assert not any(p["name"] == "Mallory" for p in everyone(chain))

    # She erases with proof at B: chain-wide; A erases her on its next push and acknowledges.
    answer = alice_b.erase_everything()
    assert answer.status_code == 303 and "done=erased" in answer.headers["Location"]
    assert b.push()["commands"] == 0
    assert one("SELECT erased_at IS NOT NULL, email_index, name_enc FROM person WHERE id = %s", alice) == (True, None, None)
    assert rows("SELECT store_id, lead_uid FROM erase_command") == [("hcm-01", alice_lead_a.uid)]
    assert a.push()["commands"] == 1
    after = appliance_snapshot(a, alice_lead_a.id)
    assert after["erased"] is not None and after["email"] is None and after["phone"] is None and after["name"] is None
    assert after["devices"] == [] and alice_a.mac not in a.gateway.grants
    a.push()  # whatever acknowledgement did not go with the commands' answer goes now
    assert one("SELECT count(*) FROM erase_command WHERE acked_at IS NULL")[0] == 0
    assert [p for p in everyone(chain) if p["email"] == ALICE_EMAIL] == []


def name_of_central(chain, person: int) -> str | None:
    return api(chain, f"/v1/people/{person}")["name"]


@pytest.mark.parametrize("mallory_proves_his_phone", [False, True], ids=["no-code", "own-phone-code"])
def test_an_unentered_code_never_sends_alices_email(chain, mallory_proves_his_phone):
    """Store B's outbox, as it went over the wire: alice's email and its index never leave the box."""
    a, b, proxy = chain["a"], chain["b"], chain["proxy"]
    _, alice_lead_a = alice_proves_everything_at(a)
    a.push()
    alice = person_of("hcm-01", alice_lead_a.uid)
    before = snapshot(alice)

    mallory = b.phone(66)
    assert mallory.sign_in(email=ALICE_EMAIL, phone=MALLORY_PHONE, name="Mallory", marketing=EVERY_BOX,
                           analytics=SHARING).status_code == 303
    if mallory_proves_his_phone:
        assert mallory.enter(mallory.wait_code("sms", MALLORY_E164)).status_code == 303
    # He asks for alice's email code too (it goes to her inbox: he never enters it).
    mallory.ask_code("email", "email")
    assert mallory.wait_code("email", ALICE_EMAIL, after=1)
    lead = b.lead_of(mallory)
    b.use()
    assert lead.email_index == chain_index(b, "email", ALICE_EMAIL)  # B holds the claim, unverified
    b.push()
    b.push()  # and again, later: the claim still never leaves

    sent = proxy.sent_by("hn-02")
    upserts = [e["data"] for e in sent if e["topic"] == "lead.upserted"]
    assert upserts and all(d["lead"] == lead.uid for d in upserts)
    for d in upserts:
        assert (d["email"], d["email_index"], d["email_verified"]) == (None, None, False)
        assert d["name"] == "Mallory"
        expected_phone = (MALLORY_E164, chain_index(b, "phone", MALLORY_E164), True) if mallory_proves_his_phone \
            else (None, None, False)
        assert (d["phone"], d["phone_index"], d["phone_verified"]) == expected_phone
    raw = proxy.raw_from("hn-02")
    assert ALICE_EMAIL.encode() not in raw and chain_index(b, "email", ALICE_EMAIL).encode() not in raw
    assert b"a***@example.com" not in raw
    mallory_person = person_of("hn-02", lead.uid)
    assert mallory_person != alice and snapshot(alice) == before
    assert one("SELECT count(*) FROM person WHERE email_index = %s", chain_index(b, "email", ALICE_EMAIL))[0] == 1


def test_a_sign_in_between_enrolling_and_restarting_still_joins_the_chain(tmp_path, providers, central_settings,  # noqa: F811
                                                                         central_server):  # noqa: F811
    """`footfall sync enroll` runs beside a live portal, which keeps its vault (the box's own index
    key) until it restarts; a guest who signs in and proves her email in that window must still be
    one person across the chain, and her erasure must still reach the other store."""
    proxy = Recorder(central_server)
    try:
        a = Appliance(tmp_path, "hcm-01", providers, central_settings, proxy)
        _, alice_lead_a = alice_proves_everything_at(a)
        a.push()
        alice = person_of("hcm-01", alice_lead_a.uid)

        b = Appliance(tmp_path, "hn-02", providers, central_settings, proxy, restart=False)  # not restarted yet
        alice_b = b.phone(11)
        assert alice_b.sign_in(email=ALICE_EMAIL, name="", analytics=SHARING).status_code == 303
        assert alice_b.enter(alice_b.wait_code("email", ALICE_EMAIL, after=1)).status_code == 303
        b._start()  # the restart comes, a little later
        b.push()  # the scheduler's job reads the key file: the chain's keys
        lead_b = b.lead_of(alice_b)
        assert lead_b.email_verified_at is not None
        assert person_of("hn-02", lead_b.uid) == alice  # the wire carries the chain's index
        assert lead_b.email_index == chain_index(b, "email", ALICE_EMAIL)  # and the push re-indexed the box's record
    finally:
        proxy.close()
        database.close()
        Appliance.active = None
