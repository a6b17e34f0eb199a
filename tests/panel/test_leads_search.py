"""The leads list (issue 16): found by name words with or without Vietnamese diacritics (a keyed
blind index), phones in the store's national format, visits and consents as columns, and every
person reachable from the list, phone-only people included."""
import datetime
import html
import re

import pytest

from portal import name_index, privacy
from portal.jobs import JOBS
from portal.models import Device, Lead, LeadNameWord, Visit, utcnow
from portal.panel import leads as leads_view
from portal.visitors import Client, SignInForm

WHEN = utcnow()


@pytest.fixture
def people(app, visitors):
    def sign_in(n, **form):
        client = Client(f"10.0.9.{n}", f"02:00:00:00:09:{n:02x}")
        outcome = visitors.sign_in(SignInForm(terms=True, adult=True, **form), client)
        assert outcome.ok, outcome
        return Lead.get(Lead.uid == outcome.lead)

    made = {
        # Her visits are shown per person: she agreed to visit analytics (issue 15).
        "dao": sign_in(1, email="dao@example.com", name="Nguyễn Thị Đào", marketing=frozenset({"marketing_email"}),
                       analytics=frozenset({"visit_analytics"})),
        "an": sign_in(2, phone="+84912345678", name="Trần Văn An"),
        "bare": sign_in(3, phone="0987654321"),
        "anh": sign_in(4, email="anh@example.com", name="Nguyen Anh"),
    }
    device = Device.get(Device.mac == "02:00:00:00:09:01")
    for days in (1, 3, 8):
        start = WHEN - datetime.timedelta(days=days)
        Visit.create(device=device, start=start, end=start + datetime.timedelta(minutes=40))
    Visit.create(device=device, start=WHEN, end=WHEN + datetime.timedelta(minutes=1), passerby=True)
    return made


def found(client, query):
    page = client.get("/panel/leads", query_string={"q": query})
    assert page.status_code == 200
    return set(re.findall(r'href="/panel/leads/([0-9a-f]+)"', page.get_data(as_text=True)))


def test_a_name_word_finds_with_or_without_diacritics(as_role, people):
    client = as_role("owner")  # one store for every query: each setup signs four people in
    for query in ("nguyen", "Nguyễn", "NGUYỄN", "  nguyen  "):
        assert found(client, query) == {people["dao"].uid, people["anh"].uid}, query


def test_every_word_typed_must_match(as_role, people):
    client = as_role("owner")
    for query, who in (("đào", "dao"), ("DAO", "dao"), ("Thi Dao", "dao"), ("dao nguyen", "dao"),
                       ("tran an", "an"), ("Trần-Văn", "an"), ("anh", "anh")):
        assert found(client, query) == {people[who].uid}, query


def test_no_partial_words_and_no_reflected_script(as_role, people):
    client = as_role("owner")
    for query in ("nguyen an", "ngu", "xyz", "!!!", "<script>alert(1)</script>"):
        assert found(client, query) == set(), query
        assert "<script>alert" not in client.get("/panel/leads", query_string={"q": query}).get_data(as_text=True)


def test_the_index_holds_keyed_hashes_not_words(app, people):
    stored = {row.word for row in LeadNameWord.select().where(LeadNameWord.lead == people["dao"])}
    vault = app.extensions["footfall"].vault
    assert stored == {vault.blind_index("name_word", w) for w in ("nguyen", "thi", "dao")}
    assert not stored & {"nguyen", "thi", "dao"}


def test_email_and_phone_search_still_work(as_role, people):
    client = as_role("owner")
    assert found(client, "DAO@example.com") == {people["dao"].uid}
    assert found(client, "0912 345 678") == {people["an"].uid}
    assert found(client, "+84 98 765 4321") == {people["bare"].uid}


def test_phones_are_in_national_format(as_role, people):
    text = as_role("owner").get("/panel/leads").get_data(as_text=True)
    assert "0912 345 678" in text and "0987 654 321" in text
    assert "+84912345678" not in text
    assert "0912 345 678" in as_role("owner").get(f"/panel/leads/{people['an'].uid}").get_data(as_text=True)


def _row(text, uid):
    rows = [r for r in text.split("<tr>") if f'/panel/leads/{uid}"' in r]
    assert len(rows) == 1
    return rows[0]


def test_visits_last_visit_and_consents_are_columns(as_role, people):
    text = as_role("owner").get("/panel/leads").get_data(as_text=True)
    header = text.split("<tr>")[1]
    for label in ("Visits", "Last visit", "Agrees to"):
        assert f"<th>{label}</th>" in header
    cells = re.findall(r"<td[^>]*>(.*?)</td>", _row(text, people["dao"].uid))
    assert cells[3] == "3"  # the passer-by run is not a visit
    assert cells[4] != ""
    assert 'data-purpose="marketing_email"' in cells[5] and "wifi_terms" not in cells[5]
    assert "counts once the contact is verified" in cells[5]  # double opt-in: her email is not proved yet
    quiet = re.findall(r"<td[^>]*>(.*?)</td>", _row(text, people["an"].uid))
    assert quiet[3] == "0" and quiet[4] == "" and "data-purpose" not in quiet[5]


def test_every_person_is_reachable_by_a_label(as_role, people):
    client = as_role("owner")
    text = client.get("/panel/leads").get_data(as_text=True)
    labels = dict((uid, html.unescape(label)) for uid, label in
                  re.findall(r'href="/panel/leads/([0-9a-f]+)">([^<]*)</a>', text))
    assert labels[people["dao"].uid] == "Nguyễn Thị Đào"
    assert labels[people["bare"].uid] == "0987***321"  # phone only, no name: the masked phone
    assert "—" not in labels.values()
    assert set(labels) == {p.uid for p in people.values()}
    assert client.get(f"/panel/leads/{people['bare'].uid}").status_code == 200


def test_paging_a_name_search_keeps_the_keyset(as_role, people, visitors, monkeypatch):
    monkeypatch.setattr(leads_view, "PAGE", 1)
    client = as_role("owner")
    first = client.get("/panel/leads", query_string={"q": "nguyen"}).get_data(as_text=True)
    nxt = re.search(r'href="(/panel/leads\?[^"]*after=\d+[^"]*)"', first)
    assert nxt and "q=nguyen" in nxt.group(1)
    second = client.get(html.unescape(nxt.group(1))).get_data(as_text=True)
    got = [set(re.findall(r'href="/panel/leads/([0-9a-f]+)"', t)) for t in (first, second)]
    assert got == [{people["anh"].uid}, {people["dao"].uid}]


def test_the_job_indexes_names_from_before_and_a_new_name_replaces_the_old(app, as_role, people, settings):
    vault = app.extensions["footfall"].vault
    old = Lead.create(name_enc=vault.encrypt("Lê Thu Hà", "lead.name"))  # a lead from before issue 16
    client = as_role("owner")
    assert found(client, "ha") == set()
    assert name_index.backfill(vault) == {"indexed": 1}
    assert found(client, "Hà") == {old.uid}
    assert name_index.backfill(vault) == {"indexed": 0}  # idempotent
    privacy.correct(people["an"], vault, "VN", "owner1", name="Phạm Minh")
    assert found(client, "tran") == set() and found(client, "pham minh") == {people["an"].uid}
    LeadNameWord.delete().where(LeadNameWord.lead == old).execute()
    assert JOBS["name_index"].run(settings)["indexed"] == 1
    assert found(client, "le thu") == {old.uid}


def test_an_erased_name_leaves_no_words(app, people, gateway):
    privacy.erase_person(people["dao"], [], gateway, "store-1", "owner1")
    assert not LeadNameWord.select().where(LeadNameWord.lead == people["dao"]).exists()


def test_the_privacy_desk_links_requests_and_guests_own_actions_to_the_person(app, as_role, people, visitors):
    client = as_role("manager")
    dao, an = people["dao"], people["an"]
    assert client.form("/panel/privacy/requests", {"kind": "access", "person": "dao@example.com"},
                       token_page="/panel/privacy").status_code == 302
    visitors.withdraw(Client("10.0.9.1", "02:00:00:00:09:01"), "marketing_email")  # on the portal, by herself
    visitors.erase(Client("10.0.9.2", "02:00:00:00:09:02"), {an.uid})
    page = client.get("/panel/privacy").get_data(as_text=True)
    request_row = page[page.index('<tr id="request-'):]
    assert f'href="/panel/leads/{dao.uid}"' in request_row.split("</tr>")[0]
    on_portal = page[page.index('id="on-portal"'):].split("</table>")[0]
    rows = on_portal.split("<tr>")[1:]
    withdrawal = next(r for r in rows if "withdrawal of consent" in r)
    assert "Offers by email" in withdrawal and f'href="/panel/leads/{dao.uid}"' in withdrawal
    erasure = next(r for r in rows if "deletion" in r)
    assert "href=" not in erasure  # erased: nobody to open
    assert client.get(f"/panel/leads/{an.uid}").status_code == 404
