"""The central store's retention purge (issue 15), and anonymous data never kept."""
import datetime
import json

from click.testing import CliRunner

from central.db import database
from tests.central.fixtures import event, post_batch
from tests.central.test_ingest import counts, lead

# The purge runs at NOW; the seed's days are set back from it. Visits are dated from the real clock
# (a store's visit more than a day ahead of the central's clock is refused, central/batch.py).
NOW = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
LONG_AGO = NOW - datetime.timedelta(days=695)


def day(ago: int) -> str:
    return (NOW - datetime.timedelta(days=ago)).date().isoformat()


def one(sql, *args):
    with database.connection_context():
        return database.execute_sql(sql, args).fetchone()


def cli(settings, *args):
    from portal.cli import main
    env = {"FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_CENTRAL_DSN": settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": settings.central_schema}
    return CliRunner().invoke(main, ["central", *args], env=env)


def visit(mac, on):
    return event("visit.closed", device=mac, start=f"{on} 10:00:00", end=f"{on} 10:40:00", passerby=False)


def seed(client, stores):
    """Lan seen at hcm-01 long ago only; Minh long ago at hcm-01 and recently at hn-02; Chi only
    consented recently. `updated_at` of each is set back to the time of their sign-in."""
    post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", phone="+84912345678", name="Lan"), event("device.linked", device="3c:22:fb:00:00:01", lead="L1"),
        event("consent.recorded", lead="L1", purpose="marketing_email", granted=True, at=f"{day(695)}T10:00:00"),
        visit("3c:22:fb:00:00:01", day(695)), event("segment.members", segment="loyal", members=["L1"]),
        lead("M1", email="minh@example.com"), event("device.linked", device="3c:22:fb:00:00:02", lead="M1"),
        visit("3c:22:fb:00:00:02", day(694))])
    post_batch(client, "hn-02", stores["hn-02"], [
        lead("N7", email="minh@example.com"), event("device.linked", device="00:1a:11:00:00:02", lead="N7"),
        visit("00:1a:11:00:00:02", day(11))])
    with database.connection_context():
        database.execute_sql("UPDATE person SET updated_at = %s", (LONG_AGO,))
        database.execute_sql("UPDATE consent_event SET at = %s", (LONG_AGO,))


def person_of(store, uid):
    row = one("SELECT person_id FROM store_lead WHERE store_id = %s AND lead_uid = %s", store, uid)
    return row[0] if row else None


def test_purge_erases_people_not_seen_at_any_store_and_keeps_the_consent_log(central_app, central_settings, stores,
                                                                             monkeypatch):
    import central.models
    client = central_app.test_client()
    seed(client, stores)
    lan, minh = person_of("hcm-01", "L1"), person_of("hcm-01", "M1")
    assert person_of("hn-02", "N7") == minh  # one person, seen recently at the other store
    monkeypatch.setattr(central.models, "utcnow", lambda: NOW)
    dry = cli(central_settings, "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["people"] == 1 and json.loads(dry.output)["dry_run"] is True
    assert one("SELECT erased_at FROM person WHERE id = %s", lan) == (None,)  # a dry run changes nothing
    done = cli(central_settings, "purge")
    assert json.loads(done.output)["people"] == 1
    gone = one("SELECT email_index, phone_index, email_enc, phone_enc, name_enc, erased_at IS NOT NULL, "
               "purged_at IS NOT NULL FROM person WHERE id = %s", lan)
    assert gone == (None, None, None, None, None, True, True)
    assert one("SELECT count(*) FROM device WHERE person_id = %s", lan) == (0,)
    assert one("SELECT count(*) FROM visit WHERE store_id = 'hcm-01' AND start < %s", day(694)) == (0,)
    assert one("SELECT count(*) FROM segment_member WHERE person_id = %s", lan) == (0,)
    assert one("SELECT purpose, granted FROM consent_event WHERE person_id = %s", lan) == ("marketing_email", True)
    assert one("SELECT count(*) FROM erase_command") == (0,)  # each store keeps its own retention
    # Minh, seen at hn-02 within the year, keeps his details and devices; his visit of 694 days ago
    # is older than the retention, so it went with its month (central/visits.py), the recent one stays.
    assert one("SELECT erased_at, email_enc IS NOT NULL FROM person WHERE id = %s", minh) == (None, True)
    assert one("SELECT count(*) FROM device WHERE person_id = %s", minh) == (2,)
    assert one("SELECT v.start::date::text FROM visit v JOIN device d ON d.id = v.device_id "
               "WHERE d.person_id = %s", minh) == (day(11),)
    assert json.loads(cli(central_settings, "purge").output)["people"] == 0  # nothing more to do
    # Lan comes back to hcm-01: a person anew (the old record keeps only its consent log).
    monkeypatch.undo()
    post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1", phone="+84912345678", name="Lan"), event("device.linked", device="3c:22:fb:00:00:01", lead="L1")])
    back = person_of("hcm-01", "L1")
    assert back not in (None, lan)
    assert one("SELECT erased_at, phone_verified_at IS NOT NULL FROM person WHERE id = %s", back) == (None, True)
    assert one("SELECT count(*) FROM device WHERE person_id = %s", back) == (1,)


def test_a_recent_consent_choice_counts_as_seen(central_app, central_settings, stores, monkeypatch):
    import central.models
    client = central_app.test_client()
    seed(client, stores)
    lan = person_of("hcm-01", "L1")
    post_batch(client, "hcm-01", stores["hcm-01"], [
        event("consent.recorded", lead="L1", purpose="marketing_email", granted=False, at=f"{day(1)}T09:00:00")])
    monkeypatch.setattr(central.models, "utcnow", lambda: NOW)
    assert json.loads(cli(central_settings, "purge").output)["people"] == 0
    assert one("SELECT erased_at FROM person WHERE id = %s", lan) == (None,)


def test_a_bad_retention_setting_is_refused(central_settings):
    from portal.config import ConfigError, load_settings
    import pytest
    with pytest.raises(ConfigError, match="central_retention_days"):
        load_settings(environ={}, data_dir=central_settings.data_dir, central_retention_days=0)


def test_visits_and_links_of_no_one_leave_no_trace(central_app, stores):
    """A store sends no anonymous visit (issue 15); one that does (an older appliance) has them
    ignored and counted, and a link to a lead unknown here keeps no MAC either."""
    client = central_app.test_client()
    answer = post_batch(client, "hcm-01", stores["hcm-01"], [
        visit("da:00:00:00:00:09", "2026-11-20"), visit("da:00:00:00:00:0a", "2026-11-20"),
        event("device.linked", device="da:00:00:00:00:0b", lead="NOBODY")])
    assert answer.status_code == 200
    assert answer.json["ignored_anonymous"] == 2 and answer.json["applied"] == 3
    assert counts()["device"] == 0 and counts()["visit"] == 0
    # Once the device is a person's, its visits are kept.
    answer = post_batch(client, "hcm-01", stores["hcm-01"], [
        lead("L1"), event("device.linked", device="da:00:00:00:00:09", lead="L1"), visit("da:00:00:00:00:09", "2026-11-21")])
    assert answer.json["ignored_anonymous"] == 0 and counts()["visit"] == 1
