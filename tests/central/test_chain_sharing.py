"""Issue 15 at the central store: a person is merged across stores only when their store says they
agreed to chain sharing (and proved the contact); absent or false keeps each store's record apart,
and a withdrawal takes the store's part out again. Real PostgreSQL."""
import pytest

from portal.core.events import EventError, validate
from tests.central.fixtures import event, post_batch
from tests.central.test_verified_identity import ALICE, consent, one, person_of, rows, upsert


def sign_in(central_app, stores, store, uid, sharing):
    lead = upsert(uid, ALICE, name="Alice", email_verified=True, chain_sharing=sharing)
    if sharing is None:
        del lead["data"]["chain_sharing"]  # an older store's event: no flag at all
    response = post_batch(central_app.test_client(), store, stores[store], [
        lead, consent(uid, "wifi_terms"),
        event("device.linked", device=f"3c:22:fb:00:00:{len(uid):02x}" if store == "hcm-01" else "3c:22:fb:00:01:0b",
              lead=uid)])
    assert response.status_code == 200, response.json
    return person_of(store, uid)


def test_both_sharing_merge_into_one_person(central_app, stores):
    a = sign_in(central_app, stores, "hcm-01", "A1", True)
    b = sign_in(central_app, stores, "hn-02", "B1", True)
    assert a == b
    assert rows("SELECT store_id FROM consent_event WHERE person_id = %s ORDER BY store_id", a) == [("hcm-01",), ("hn-02",)]


@pytest.mark.parametrize("sharing", [False, None], ids=["false", "absent"])
def test_a_store_whose_person_does_not_share_keeps_them_apart(central_app, stores, sharing):
    a = sign_in(central_app, stores, "hcm-01", "A1", True)
    before = one("SELECT email_index, email_verified_at FROM person WHERE id = %s", a)
    b = sign_in(central_app, stores, "hn-02", "B1", sharing)
    assert a != b
    assert one("SELECT email_index, email_verified_at FROM person WHERE id = %s", a) == before  # A's person untouched
    # B's person holds the proved contact (its exports may use it) but no index anyone merges by.
    index, enc, verified = one("SELECT email_index, email_enc, email_verified_at FROM person WHERE id = %s", b)
    assert (index, enc is not None, verified is not None) == (None, True, True)
    assert rows("SELECT DISTINCT store_id FROM consent_event WHERE person_id = %s", b) == [("hn-02",)]
    assert rows("SELECT DISTINCT store_id FROM device WHERE person_id = %s", b) == [("hn-02",)]


def test_the_first_store_not_sharing_never_becomes_the_holder(central_app, stores):
    b = sign_in(central_app, stores, "hn-02", "B1", False)    # first here, kept apart
    a = sign_in(central_app, stores, "hcm-01", "A1", True)    # shares: finds nobody to merge with
    assert a != b
    assert one("SELECT count(*) FROM person WHERE email_index IS NOT NULL")[0] == 1
    assert one("SELECT email_index IS NOT NULL FROM person WHERE id = %s", a)[0]


def test_agreeing_later_merges_and_withdrawing_splits_again(central_app, stores):
    a = sign_in(central_app, stores, "hcm-01", "A1", True)
    b = sign_in(central_app, stores, "hn-02", "B1", False)
    assert a != b
    client = central_app.test_client()
    # B's visitor ticks chain sharing on a later visit: the store sends the lead again, now sharing.
    assert post_batch(client, "hn-02", stores["hn-02"], [consent("B1", "chain_sharing"),
                                                          upsert("B1", ALICE, name="Alice", email_verified=True,
                                                                 chain_sharing=True)]).status_code == 200
    assert person_of("hn-02", "B1") == a
    assert one("SELECT count(*) FROM person WHERE id = %s", b)[0] == 0  # the record kept apart was folded in
    # ...and withdraws it: B's part leaves the merged person, A's stays.
    assert post_batch(client, "hn-02", stores["hn-02"], [consent("B1", "chain_sharing", granted=False),
                                                          upsert("B1", ALICE, name="Alice", email_verified=True,
                                                                 chain_sharing=False)]).status_code == 200
    apart = person_of("hn-02", "B1")
    assert apart != a and person_of("hcm-01", "A1") == a
    assert rows("SELECT DISTINCT store_id FROM consent_event WHERE person_id = %s", a) == [("hcm-01",)]
    assert rows("SELECT DISTINCT store_id FROM consent_event WHERE person_id = %s", apart) == [("hn-02",)]
    assert rows("SELECT store_id, mac FROM device WHERE person_id = %s", apart) == [("hn-02", "3c:22:fb:00:01:0b")]
    assert one("SELECT email_index FROM person WHERE id = %s", apart)[0] is None
    assert one("SELECT email_index IS NOT NULL FROM person WHERE id = %s", a)[0]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_chain_sharing_must_be_a_boolean(value):
    raw = event("lead.upserted", lead="L1", language="vi", chain_sharing=value)
    with pytest.raises(EventError) as exc:
        validate(raw)
    assert exc.value.args[0] == "chain_sharing"


def test_a_bad_flag_refuses_the_whole_batch(central_app, stores):
    response = post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"], [
        upsert("A1", ALICE, email_verified=True), event("lead.upserted", lead="A2", language="vi", chain_sharing="true")])
    assert response.status_code == 400 and "chain_sharing" in response.json["error"]
    assert person_of("hcm-01", "A1") is None

