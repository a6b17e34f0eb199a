"""Figures from day one (issue 16): a visit's origin, and the sign-in sessions still in progress.

`visit.origin` tells a collector's visit ('collector', every visit before this) from one made of a
sign-in and the gateway's last sign of life ('signin', portal/signin_visits.py). `signin_run` is a
sign-in session still going (one per device): it becomes a visit once the device has been silent
for the visit gap, and the row goes."""
from peewee import DateTimeField, ForeignKeyField, Model


def up(migrator, db):
    # One ALTER TABLE, never peewee's add_column: for a NOT NULL column it rebuilds the table, and
    # the rebuilt visit table would lose the triggers that note who may have moved (0021).
    db.execute_sql("ALTER TABLE visit ADD COLUMN origin VARCHAR(255) NOT NULL DEFAULT 'collector'")

    class Device(Model):
        class Meta:
            database = db
            table_name = 'device'

    class SigninRun(Model):
        device = ForeignKeyField(Device, primary_key=True, on_delete='CASCADE')
        start = DateTimeField()
        last = DateTimeField()

        class Meta:
            database = db
            table_name = 'signin_run'

    db.create_tables([SigninRun])


def down(migrator, db):
    db.execute_sql('DROP TABLE IF EXISTS signin_run')
    db.execute_sql("ALTER TABLE visit DROP COLUMN origin")
