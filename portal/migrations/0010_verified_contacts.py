"""Verified identity (issue 11): proof per contact, claims awaiting a code, claims folded into a lead."""
from peewee import *


def up(migrator, db):
    class Lead(Model):
        class Meta:
            database = db
            table_name = 'lead'
    migrator.migrate(
        migrator.add_column('lead', 'email_verified_at', DateTimeField(null=True)),
        migrator.add_column('lead', 'phone_verified_at', DateTimeField(null=True)),
        migrator.add_column('lead', 'phone_verified_via', CharField(null=True)),
        migrator.add_column('lead', 'merged_into_id', ForeignKeyField(Lead, Lead.id, null=True, on_delete='SET NULL')),
        migrator.add_column('verification_code', 'claim_uid', CharField(null=True)),
        migrator.add_index('verification_code', ('claim_uid',)),
    )

    class ContactClaim(Model):
        uid = CharField(unique=True)
        lead_uid = CharField(index=True)
        kind = CharField()
        destination_index = CharField()
        destination_enc = BlobField()
        typed = BooleanField(default=True)
        device_mac = CharField(null=True)
        ip = CharField(null=True)
        language = CharField(default='vi')
        created_at = DateTimeField(index=True)
        verified_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = 'contact_claim'

    class ContactProof(Model):
        uid = CharField(unique=True)
        lead = ForeignKeyField(Lead, on_delete='CASCADE')
        kind = CharField()
        channel = CharField()
        destination_masked = CharField()
        store_id = CharField()
        device_mac = CharField(null=True)
        ip = CharField(null=True)
        verified_at = DateTimeField()

        class Meta:
            database = db
            table_name = 'contact_proof'
    db.create_tables([ContactClaim, ContactProof])


def down(migrator, db):
    db.execute_sql('DROP TABLE contact_proof')
    db.execute_sql('DROP TABLE contact_claim')
    migrator.migrate(
        migrator.drop_index('verification_code', 'verificationcode_claim_uid'),
        migrator.drop_column('verification_code', 'claim_uid'),
        migrator.drop_column('lead', 'merged_into_id'),
        migrator.drop_column('lead', 'phone_verified_via'),
        migrator.drop_column('lead', 'phone_verified_at'),
        migrator.drop_column('lead', 'email_verified_at'),
    )
