"""The privacy desk's clocks and identity check, restriction of a person, and the compliance pack's
registers of transfers abroad and breaches (issue 15)."""
from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column('lead', 'restricted_at', DateTimeField(null=True)),
        migrator.add_column('data_request', 'ack_due_at', DateTimeField(null=True)),
        migrator.add_column('data_request', 'acknowledged_at', DateTimeField(null=True)),
        migrator.add_column('data_request', 'processor', BooleanField(default=False)),
        migrator.add_column('data_request', 'extended_at', DateTimeField(null=True)),
        migrator.add_column('data_request', 'extension_reason', CharField(null=True)),
        migrator.add_column('data_request', 'verified_at', DateTimeField(null=True)),
        migrator.add_column('data_request', 'verify_method', CharField(null=True)),
        migrator.add_column('data_request', 'verified_by', CharField(null=True)),
        migrator.add_column('data_request', 'verify_claim', CharField(null=True)),
    )
    # The law says deletion; the register said erasure.
    db.execute_sql("UPDATE data_request SET kind = 'deletion' WHERE kind = 'erasure'")

    class TransferAssessment(Model):
        platform = CharField(index=True)
        recipient = CharField()
        country = CharField()
        assessed_on = DateField()
        reference = CharField(default='')
        recorded_by = CharField()
        recorded_at = DateTimeField()
        withdrawn_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'transfer_assessment'

    class Breach(Model):
        detected_at = DateTimeField()
        description = TextField()
        data_kinds = CharField(default='')
        people = IntegerField(null=True)
        measures = TextField(default='')
        recorded_by = CharField()
        recorded_at = DateTimeField()
        reported_at = DateTimeField(null=True)
        reported_by = CharField(null=True)
        report_reference = CharField(default='')

        class Meta:
            database = db
            table_name = 'breach'
    db.create_tables([TransferAssessment, Breach])


def down(migrator, db):
    db.execute_sql('DROP TABLE breach')
    db.execute_sql('DROP TABLE transfer_assessment')
    db.execute_sql("UPDATE data_request SET kind = 'erasure' WHERE kind = 'deletion'")
    migrator.migrate(*(migrator.drop_column('data_request', c) for c in (
        'verify_claim', 'verified_by', 'verify_method', 'verified_at', 'extension_reason', 'extended_at', 'processor',
        'acknowledged_at', 'ack_due_at')), migrator.drop_column('lead', 'restricted_at'))
