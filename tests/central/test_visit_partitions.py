"""Visits by month (issue 18, central/visits.py, migration 0008): the migration moves a populated
table, partitions are made ahead, the retention purge drops whole months, and with no foreign key
left every erasure deletes its visits itself. Real PostgreSQL."""
import datetime
import json

import pytest

from central import chainstat, visits
from central.db import database
from tests.central.fixtures import event, post_batch
from tests.central.test_api import auth, tokens  # noqa: F401  (the fixture)
from tests.central.test_chain_stat import expected
from tests.central.test_ingest import lead
from tests.central.test_retention import cli

NOW = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
VISIT_COLUMNS = 'id, store_id, device_id, start, "end", passerby'


def rows(sql, *args):
    with database.connection_context():
        return database.execute_sql(sql, args).fetchall()


def ago(days: float) -> datetime.datetime:
    return NOW - datetime.timedelta(days=days)


def visit(mac, start: datetime.datetime, minutes=40, passerby=False):
    return event("visit.closed", device=mac, start=start.isoformat(sep=" "),
                 end=(start + datetime.timedelta(minutes=minutes)).isoformat(sep=" "), passerby=passerby)


def person_with_visits(client, key, store, uid, mac, starts, email="lan@example.com", analytics=True):
    """A verified lead with a device and visits at `store`; returns the person's id."""
    events = [lead(uid, email=email), event("device.linked", device=mac, lead=uid)]
    if analytics:
        events.append(event("consent.recorded", lead=uid, purpose="visit_analytics", granted=True))
    answer = post_batch(client, store, key, events + [visit(mac, s) for s in starts])
    assert answer.status_code == 200, answer.json
    return rows("SELECT person_id FROM store_lead WHERE store_id = %s AND lead_uid = %s", store, uid)[0][0]


def orphans() -> int:
    """Visit rows whose device is gone: what ON DELETE CASCADE used to prevent."""
    return rows("SELECT count(*) FROM visit v WHERE NOT EXISTS (SELECT 1 FROM device d WHERE d.id = v.device_id)")[0][0]


def visits_of(person) -> int:
    return rows("SELECT count(*) FROM visit v JOIN device d ON d.id = v.device_id WHERE d.person_id = %s", person)[0][0]


def stat_equals_scan():
    with database.connection_context():
        cur = database.cursor()
        cur.execute(f"SELECT {', '.join(chainstat.COLUMNS)} FROM chain_stat ORDER BY person_id")
        return cur.fetchall() == sorted(chainstat._scan(cur, "TRUE", []))


# -- the migration ----------------------------------------------------------------------------------

def migrate_populated(pg_dsn, schema, months_back=(0, 1, 5, 30)):
    """A central at 0007 with visits in several months (one 12 years old), then migrated to 0008."""
    from playhouse.migrations import Runner

    from central.db import MIGRATIONS_DIR, init_db
    init_db(pg_dsn, schema, migrate=False)
    with database.connection_context():
        runner = Runner(database, directory=str(MIGRATIONS_DIR), schema=schema)
        runner.up(target="0007_chain_stat")
        database.execute_sql("INSERT INTO store (id, name, key_enc, created_at, events_applied) "
                             "VALUES ('hcm-01', 'x', '\\x00', now(), 0)")
        database.execute_sql("INSERT INTO device (store_id, mac) VALUES ('hcm-01', '3c:22:fb:00:00:01')")
        device = database.execute_sql("SELECT id FROM device").fetchone()[0]
        starts = [NOW - datetime.timedelta(days=31 * m, hours=h) for m in months_back for h in range(3)]
        starts.append(NOW - datetime.timedelta(days=365 * 12))
        for n, start in enumerate(starts):
            database.execute_sql('INSERT INTO visit (store_id, device_id, start, "end", passerby) VALUES (%s, %s, %s, %s, %s)',
                                 ("hcm-01", device, start, start + datetime.timedelta(minutes=30), n % 4 == 0))
        before = database.execute_sql(f"SELECT {VISIT_COLUMNS} FROM visit ORDER BY id").fetchall()
        runner.up()
    return runner, before


def test_the_migration_moves_every_visit_into_its_month(pg_dsn, schema):
    runner, before = migrate_populated(pg_dsn, schema)
    assert rows(f"SELECT {VISIT_COLUMNS} FROM visit ORDER BY id") == before
    assert rows("SELECT relkind::text FROM pg_class WHERE oid = 'visit'::regclass") == [("p",)]
    with database.connection_context():
        made = visits.months(database.cursor())
    current = visits.month_of(NOW)
    oldest_kept = visits.add_months(current, -visits.MAX_BACK)
    # Every month from the oldest visit's (within MAX_BACK) to AHEAD months ahead, without a gap.
    first = visits.month_of(min(r[3] for r in before if r[3] >= datetime.datetime.combine(oldest_kept, datetime.time())))
    span = (current.year - first.year) * 12 + current.month - first.month + visits.AHEAD + 1
    assert sorted(made) == [visits.add_months(first, n) for n in range(span)]
    # Each row sits in its own month's partition; the 12-year-old one in the default partition.
    placed = rows("SELECT tableoid::regclass::text, start FROM visit")
    for table, start in placed:
        month = visits.month_of(start)
        assert table == (made[month] if month in made else visits.DEFAULT), (table, start)
    assert sum(table == visits.DEFAULT for table, _ in placed) == 1
    # No foreign key on visit; the indexes the queries on visit use (central/*.py) are there.
    assert rows("SELECT count(*) FROM pg_constraint WHERE conrelid = 'visit'::regclass AND contype = 'f'") == [(0,)]
    indexes = {name: definition.split(" USING ")[1] for name, definition in
               rows("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'visit' AND schemaname = %s", schema)}
    assert indexes == {"visit_pkey": "btree (id, start)", "visit_store_id_start": "btree (store_id, start)",
                       "visit_device_id": "btree (device_id)"}
    # The model says the same (peewee's schema diff reads plain tables only).
    from central.models import Visit
    assert {tuple(i[0]) for i in Visit._meta.indexes} | {(f.column_name,) for f in Visit._meta.sorted_fields if f.index} \
        == {("store_id", "start"), ("device_id",)}
    columns = rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'visit' AND table_schema = %s "
                   "ORDER BY ordinal_position", schema)
    assert [c[0] for c in columns] == [f.column_name for f in Visit._meta.sorted_fields]
    # The id sequence goes on from where it was.
    with database.connection_context():
        new = database.execute_sql('INSERT INTO visit (store_id, device_id, start, "end", passerby) '
                                   "VALUES ('hcm-01', 1, %s, %s, false) RETURNING id", (NOW, NOW)).fetchone()[0]
    assert new > max(r[0] for r in before)


def test_the_migration_goes_back_and_forth(pg_dsn, schema):
    runner, before = migrate_populated(pg_dsn, schema)
    with database.connection_context():
        runner.down()
        assert database.execute_sql("SELECT relkind::text FROM pg_class WHERE oid = 'visit'::regclass").fetchone() == ("r",)
        assert database.execute_sql(f"SELECT {VISIT_COLUMNS} FROM visit ORDER BY id").fetchall() == before
        assert database.execute_sql("SELECT count(*) FROM pg_constraint WHERE conrelid = 'visit'::regclass "
                                    "AND contype = 'f'").fetchone() == (2,)
        runner.up()
        assert database.execute_sql(f"SELECT {VISIT_COLUMNS} FROM visit ORDER BY id").fetchall() == before


# -- partitions ahead and the default partition -------------------------------------------------------

def test_the_central_starts_with_the_months_from_its_retention_cutoff_to_two_ahead(central_app, central_settings):
    with database.connection_context():
        cur = database.cursor()
        made = sorted(visits.months(cur))
        assert made[0] == visits.cutoff_month(NOW, central_settings.central_retention_days)
        assert made[-1] == visits.add_months(visits.month_of(NOW), visits.AHEAD)
        assert len(made) == len(set(made)) == (made[-1].year - made[0].year) * 12 + made[-1].month - made[0].month + 1
        with database.atomic():
            assert visits.ensure(cur, NOW, central_settings.central_retention_days) == []  # nothing more to do


def test_a_visit_of_a_month_without_partition_is_kept_and_moves_into_its_month_later(central_app, stores):
    """Far past or far future (a clock gone wrong): the batch is applied, the visit waits in the
    default partition, and moves into its month's partition when that is created."""
    client = central_app.test_client()
    future, past = NOW + datetime.timedelta(days=200), NOW - datetime.timedelta(days=800)
    person = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [past, ago(2), future])
    assert visits_of(person) == 3
    assert sorted(rows("SELECT tableoid::regclass::text FROM visit WHERE start IN (%s, %s)", past, future)) == \
        [(visits.DEFAULT,), (visits.DEFAULT,)]
    with database.connection_context(), database.atomic():
        cur = database.cursor()
        assert visits.ahead(cur, NOW) == 1  # what the purge reports
        created = visits.ensure(cur, NOW + datetime.timedelta(days=200), 1100)  # months from 2 years back to 8 ahead
    assert visits.name_of(visits.month_of(future)) in created and visits.name_of(visits.month_of(past)) in created
    assert rows("SELECT tableoid::regclass::text FROM visit WHERE start = %s", future) == [(visits.name_of(visits.month_of(future)),)]
    assert rows("SELECT tableoid::regclass::text FROM visit WHERE start = %s", past) == [(visits.name_of(visits.month_of(past)),)]
    assert rows(f"SELECT count(*) FROM {visits.DEFAULT}") == [(0,)]
    assert visits_of(person) == 3 and stat_equals_scan()


# -- erasures delete the visits themselves ----------------------------------------------------------

@pytest.mark.parametrize("how", ["api", "lead.erased", "devices.erased", "purge_person"])
def test_an_erasure_leaves_no_visit_of_the_person(central_app, stores, tokens, how):
    client = central_app.test_client()
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(1), ago(40), ago(70)])
    post_batch(client, "hn-02", stores["hn-02"], [lead("B1"), event("device.linked", device="00:1a:11:00:00:01", lead="B1"),
                                                  visit("00:1a:11:00:00:01", ago(3))])
    minh = person_with_visits(client, stores["hcm-01"], "hcm-01", "M1", "3c:22:fb:00:00:02", [ago(2), ago(50)],
                              email="minh@example.com")
    assert rows("SELECT person_id FROM store_lead WHERE lead_uid = 'B1'") == [(lan,)]  # one person, two stores
    assert (visits_of(lan), visits_of(minh)) == (4, 2)
    if how == "api":
        assert client.post(f"/v1/people/{lan}/erase", headers=auth(tokens["erase"])).status_code == 200
    elif how == "lead.erased":
        assert post_batch(client, "hcm-01", stores["hcm-01"], [event("lead.erased", lead="L1", verified=True)]).status_code == 200
    elif how == "devices.erased":  # one store's device: its visits go, the other store's stay
        assert post_batch(client, "hcm-01", stores["hcm-01"], [
            event("devices.erased", devices=["3c:22:fb:00:00:01"])]).status_code == 200
    else:
        from central.people import purge_person
        with database.connection_context(), database.atomic():
            purge_person(database.cursor(), lan, NOW)
    left = 1 if how == "devices.erased" else 0
    assert visits_of(lan) == left
    assert rows("SELECT count(*) FROM visit WHERE store_id = 'hcm-01' AND device_id NOT IN "
                "(SELECT id FROM device WHERE person_id = %s)", minh) == [(0,)]
    assert orphans() == 0
    assert visits_of(minh) == 2 and stat_equals_scan()


# -- retention by month -----------------------------------------------------------------------------

def test_the_purge_drops_whole_months_older_than_the_retention_and_keeps_the_rest(central_app, central_settings, stores,
                                                                               tokens, monkeypatch):
    """Lan was seen yesterday and 14 months ago: she stays, her old month goes. The month of the
    cutoff itself is kept whole (a visit is kept the retention at least, a month more at most)."""
    import central.api as api
    import central.models
    client = central_app.test_client()
    old = ago(365 + 62)
    edge = datetime.datetime.combine(visits.cutoff_month(NOW, 365), datetime.time(10))  # older than 365 days, month kept
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [old, edge, ago(100), ago(1)])
    minh = person_with_visits(client, stores["hn-02"], "hn-02", "M1", "00:1a:11:00:00:02", [ago(10)], email="minh@example.com")
    old_table = visits.name_of(visits.month_of(old))
    with database.connection_context(), database.atomic():  # the central started long ago: that month has its partition
        visits.ensure(database.cursor(), NOW, 500)
    assert rows("SELECT tableoid::regclass::text FROM visit WHERE start = %s", old) == [(old_table,)]
    assert rows("SELECT visits, first_start FROM chain_stat WHERE person_id = %s", lan) == [(4, old)]
    monkeypatch.setattr(central.models, "utcnow", lambda: NOW)
    dry = cli(central_settings, "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert old_table in json.loads(dry.output)["visits"]["partitions_dropped"]
    assert rows("SELECT count(*) FROM visit WHERE start = %s", old) == [(1,)]  # a dry run drops nothing
    done = cli(central_settings, "purge")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["people"] == 0
    assert old_table in report["visits"]["partitions_dropped"] and report["visits"]["visits_dropped"] == 1
    assert report["visits"]["chain_stat_refreshed"] == 1
    assert rows("SELECT to_regclass(%s)", old_table) == [(None,)]
    with database.connection_context():
        kept = sorted(visits.months(database.cursor()))
    assert kept[0] == visits.cutoff_month(NOW, 365) and kept[-1] == visits.add_months(visits.month_of(NOW), 2)
    assert sorted(r[0] for r in rows("SELECT start FROM visit v JOIN device d ON d.id = v.device_id WHERE d.person_id = %s",
                                     lan)) == sorted([edge, ago(100), ago(1)])
    assert visits_of(minh) == 1
    assert rows("SELECT visits, first_start FROM chain_stat WHERE person_id = %s", lan) == [(3, edge)]
    assert stat_equals_scan()
    monkeypatch.setattr(api, "utcnow", lambda: NOW)
    served = client.get("/v1/segments", headers=auth(tokens["read"])).json["segments"]
    with database.connection_context():
        assert served == expected(database.cursor(), NOW)[0]
    again = json.loads(cli(central_settings, "purge").output)["visits"]
    assert again["partitions_dropped"] == [] and again["visits_dropped"] == 0 and again["chain_stat_refreshed"] == 0


def test_an_erasure_waits_for_a_batch_still_adding_visits_to_the_device(central_app, stores, pg_dsn, central_settings):
    """No foreign key checks a visit's device any more: a batch adding visits to a device while an
    erasure deletes it would leave visits of no device, unless the erasure waits for that batch
    (the ingest holds its devices FOR KEY SHARE, as the foreign key did). The batch is held
    between its COPY and its commit by taking the lock its chain_stat refresh needs."""
    import threading

    from central.people import erase_person
    from tests import pgserver
    client = central_app.test_client()
    lan = person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [ago(3)])
    holder, cur = pgserver.hold_chain_row(pg_dsn, lan)
    statuses, errors = [], []


    def push():
        statuses.append(post_batch(central_app.test_client(), "hcm-01", stores["hcm-01"],
                                   [visit("3c:22:fb:00:00:01", ago(1))]).status_code)

    def erase():
        try:
            with database.connection_context(), database.atomic():
                erase_person(database.cursor(), lan, origin=None)
        except Exception as exc:  # reported below, with the test's own assertion
            errors.append(exc)

    batch, erasure = threading.Thread(target=push), threading.Thread(target=erase)
    try:
        batch.start()
        assert pgserver.lock_waiters(cur, 1), "the batch never reached its chain_stat refresh"
        erasure.start()
        assert pgserver.lock_waiters(cur, 2), "the erasure never waited"
    finally:
        holder.close()  # the lock goes with its session
        batch.join(30)
        erasure.join(30)
    assert statuses == [200] and errors == []
    assert rows("SELECT count(*) FROM device") == [(0,)]
    assert orphans() == 0 and rows("SELECT count(*) FROM visit") == [(0,)]
    assert stat_equals_scan()


def test_workers_starting_together_make_each_month_once(central_app, central_settings):
    """Every worker calls ensure at start: in parallel, each missing month is made once, no error."""
    import threading
    errors, made = [], []

    def start():
        try:
            with database.connection_context(), database.atomic():
                made.extend(visits.ensure(database.cursor(), NOW, 3 * 365))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with database.connection_context():
        months = visits.months(database.cursor())
    assert sorted(made) == sorted(set(made)) and len(made) == 24  # two more years back, made once each
    assert min(months) == visits.cutoff_month(NOW, 3 * 365)


def test_a_busy_visit_table_makes_the_purge_give_up_dropping_with_a_clear_error(central_app, central_settings, stores,
                                                                              pg_dsn, monkeypatch):
    import psycopg2

    from tests import pgserver
    client = central_app.test_client()
    old = ago(365 + 62)
    with database.connection_context(), database.atomic():
        visits.ensure(database.cursor(), NOW, 500)
    person_with_visits(client, stores["hcm-01"], "hcm-01", "L1", "3c:22:fb:00:00:01", [old, ago(1)])
    monkeypatch.setattr(visits, "LOCK_WAIT", 1)
    reader = psycopg2.connect(**pgserver.connect_kwargs(pg_dsn), options=f"-c search_path={central_settings.central_schema}")
    try:
        reader.cursor().execute("SELECT count(*) FROM visit")  # a long read: its transaction stays open
        busy = cli(central_settings, "purge")
    finally:
        reader.close()
    assert busy.exit_code == 1
    assert "the visit table stayed busy for 1 s: no month dropped this time (run the purge again)" in busy.output
    assert rows("SELECT count(*) FROM visit WHERE start = %s", old) == [(1,)]
    done = cli(central_settings, "purge")
    assert done.exit_code == 0 and json.loads(done.output)["visits"]["visits_dropped"] == 1
    assert rows("SELECT count(*) FROM visit WHERE start = %s", old) == [(0,)] and stat_equals_scan()


@pytest.mark.parametrize("days", [800_000, 10**12])
def test_a_retention_longer_than_the_calendar_keeps_every_month(days):
    assert visits.cutoff_month(NOW, days) == datetime.date.min
    assert visits.cutoff_month(NOW, 31) == visits.month_of(NOW - datetime.timedelta(days=31))
