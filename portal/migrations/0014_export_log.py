"""Export log (issue 15): every export and the people in it, for removal lists after a withdrawal or erasure."""
from peewee import *


def up(migrator, db):
    class Lead(Model):
        class Meta:
            database = db
            table_name = 'lead'

    class ExportLog(Model):
        actor = CharField()
        segment_key = CharField()
        segment_name = CharField()
        kind = CharField()
        members = IntegerField(default=0)
        created_at = DateTimeField(index=True)

        class Meta:
            database = db
            table_name = 'export_log'

    class ExportMember(Model):
        export = ForeignKeyField(ExportLog, on_delete='CASCADE')
        lead = ForeignKeyField(Lead, on_delete='CASCADE', index=True)
        email_hash = CharField(null=True)
        phone_hash = CharField(null=True)
        policies = TextField(default='{}')

        class Meta:
            database = db
            table_name = 'export_member'
    db.create_tables([ExportLog, ExportMember])


def down(migrator, db):
    db.execute_sql('DROP TABLE export_member')
    db.execute_sql('DROP TABLE export_log')
