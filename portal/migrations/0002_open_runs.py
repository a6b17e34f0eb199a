"""Runs of sightings in progress, so that the collector carries visits across a restart."""
from peewee import *


def up(migrator, db):
    class Device(Model):
        class Meta:
            database = db
            table_name = 'device'

    class OpenRun(Model):
        device = ForeignKeyField(Device, on_delete='CASCADE')
        source = CharField()
        start = DateTimeField()
        last = DateTimeField()
        sightings = IntegerField(default=1)

        class Meta:
            database = db
            table_name = 'open_run'
            primary_key = CompositeKey('device', 'source')
    db.create_tables([OpenRun])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('open_run'))
