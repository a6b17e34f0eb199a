from portal import consent
from portal.models import Consent, Lead, OutboxEvent, PolicyVersion
from portal.core.purposes import MARKETING_PURPOSES
from portal.policy_texts import DOCUMENTS

WHERE = consent.Where("store-1", "02:00:00:00:00:01", "10.0.0.10", "portal_form")


def test_defaults_published_for_every_document_and_language(app):
    for document in DOCUMENTS:
        for language in consent.LANGUAGES:
            version = consent.current(document, language)
            assert version is not None and version.sha256 == consent.text_sha256(version.text)
    assert "Cà Phê Test" in consent.current("marketing_email", "en").text


def test_ensure_policies_is_idempotent(app, settings):
    before = PolicyVersion.select().count()
    assert consent.ensure_policies(settings) == []
    assert PolicyVersion.select().count() == before


def test_editing_text_makes_a_new_version_and_unchanged_text_does_not(app):
    first = consent.current("wifi_terms", "en")
    assert consent.publish("wifi_terms", "en", first.text + "  ").id == first.id
    second = consent.publish("wifi_terms", "en", first.text + " Updated.")
    assert second.id != first.id and second.sha256 != first.sha256
    assert consent.current("wifi_terms", "en").id == second.id


def test_consent_log_is_append_only_and_state_is_the_latest(app):
    lead = Lead.create()
    policy = consent.current("marketing_email", "en")
    consent.record(lead, "marketing_email", True, WHERE, policy)
    consent.record(lead, "marketing_email", False, WHERE)
    state = consent.state(lead)
    assert state["marketing_email"].granted is False
    assert state["marketing_sms"] is None
    assert [c.granted for c in consent.history(lead)] == [True, False]
    grant = consent.history(lead)[0]
    assert grant.policy_sha256 == policy.sha256 and grant.device_mac == WHERE.mac and grant.ip == WHERE.ip
    assert OutboxEvent.select().where(OutboxEvent.topic == "consent.recorded").count() == 2


def test_terms_consent_lapses_when_the_terms_change(app):
    lead = Lead.create()
    consent.record(lead, "wifi_terms", True, WHERE, consent.current("wifi_terms", "vi"))
    assert consent.has_current_terms(lead)
    consent.publish("wifi_terms", "en", "New English terms.")
    assert consent.has_current_terms(lead)  # the visitor agreed to the Vietnamese text, unchanged
    consent.publish("wifi_terms", "vi", "Điều khoản mới.")
    assert not consent.has_current_terms(lead)


def test_marketing_purposes_are_separate(app):
    lead = Lead.create()
    consent.record(lead, "marketing_sms", True, WHERE, consent.current("marketing_sms", "vi"))
    assert consent.granted_purposes(lead) == {"marketing_sms"}
    assert set(MARKETING_PURPOSES) - consent.granted_purposes(lead) == {"marketing_email", "ad_audiences"}
    assert Consent.select().count() == 1
