"""The owner's texts in the panel: a rename confirmed after its diff, material changes counted before
they are saved, the notice's sections, example contacts, and the entrance sign."""
import html
import re

import pytest

from portal import consent
from portal.models import AuditEntry, Authorization, PolicyVersion, StoreSetting
from portal.panel.sign import notice_url, qr_data_uri
from portal.policy_texts import NOTICE
from tests.conftest import PortalClient, prove_claims


def page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def snapshot() -> tuple:
    return (sorted((v.id, v.sha256) for v in PolicyVersion.select()),
            sorted((s.key, s.value) for s in StoreSetting.select()))


@pytest.fixture
def owner(as_role):
    return as_role("owner")


def signed_up(visitors, ip="10.0.0.20"):
    """A guest who agreed, in English, to email offers and proved her email; her device and lead."""
    from portal.gateway.null import synthetic_mac
    from portal.visitors import Client, SignInForm
    device = Client(ip, synthetic_mac(ip))  # the MAC the null gateway gives this address
    outcome = visitors.sign_in(SignInForm(email="lan@example.com", terms=True, language="en", adult=True,
                                          marketing=frozenset({"marketing_email"})), device)
    assert outcome.ok, outcome.errors
    prove_claims(visitors, outcome, device)
    return device, visitors.recognised(device)


def test_a_rename_shows_the_diff_then_publishes_editorial_versions(owner, app, visitors):
    device, lead = signed_up(visitors)
    assert "marketing_email" in consent.effective_purposes(lead)
    before = snapshot()
    shown = owner.form("/panel/settings", {"store_name": "Cà Phê Mới"}, token_page="/panel/settings")
    assert shown.status_code == 200
    text = page(shown)
    assert "Check before publishing" in text and 'name="confirm" value="1"' in text
    diff = re.search(r'<pre class="diff"[^>]*id="diff-marketing_email-en">(.*?)</pre>', shown.get_data(as_text=True), re.S)
    assert diff and "<del>- Send me offers and news from Cà Phê Test" in html.unescape(diff.group(1))
    assert "<ins>+ Send me offers and news from Cà Phê Mới" in html.unescape(diff.group(1))
    assert snapshot() == before                                         # nothing saved before the confirm
    done = owner.form("/panel/settings", {"store_name": "Cà Phê Mới", "confirm": "1"}, token_page="/panel/settings")
    assert done.status_code == 200 and "Saved." in page(done)
    for document in ("marketing_email", "marketing_sms", "ad_audiences", "visit_analytics", NOTICE):
        for language in ("en", "vi"):
            version = consent.current(document, language)
            assert "Cà Phê Mới" in version.text and version.material is False, (document, language)
    assert "marketing_email" in consent.effective_purposes(lead)      # editorial: her consent stays valid
    assert visitors.recognised(device) is not None                     # and she is welcomed back
    details = [e.detail for e in AuditEntry.select().where(AuditEntry.action == "policy_published")]
    assert details and all('"change": "editorial"' in d and '"reason": "settings"' in d for d in details)
    assert app.extensions["footfall"].settings.store_name == "Cà Phê Mới"


def test_a_material_change_says_how_many_are_asked_again_and_asks_them(owner, app, visitors):
    lan, lead = signed_up(visitors)
    assert lead is not None and "marketing_email" in consent.effective_purposes(lead)
    Authorization.delete().execute()  # she comes back another day
    client = PortalClient(app.test_client(), ip=lan.ip)
    welcome = page(client.get("/", headers={"Accept-Language": "en"}))
    assert "Welcome back" in welcome and "Our texts have changed" not in welcome
    settings_page = page(owner.get("/panel/settings"))
    option = re.search(r'<select id="kind-marketing_email-en".*?</select>', settings_page, re.S).group(0)
    assert "1 returning guests will be asked to agree again" in option
    assert "0 returning guests" in re.search(r'<select id="kind-marketing_email-vi".*?</select>', settings_page, re.S).group(0)

    new = "Send me {store}'s offers by email, and let partners send theirs."
    before = snapshot()
    form = {"text-marketing_email-en": new, "kind-marketing_email-en": "material"}
    shown = owner.form("/panel/settings", form, token_page="/panel/settings")
    assert shown.status_code == 200 and snapshot() == before
    assert re.search(r'id="material-marketing_email-en">.*1 returning guests will be asked to agree again', page(shown))
    done = owner.form("/panel/settings", {**form, "confirm": "1"}, token_page="/panel/settings")
    assert done.status_code == 200
    version = consent.current("marketing_email", "en")
    assert version.material is True and version.text == "Send me Cà Phê Test's offers by email, and let partners send theirs."
    assert version.template == new
    assert "marketing_email" not in consent.effective_purposes(lead)  # exports, messages, segments: no longer
    # The guest comes back: no one-tap welcome, the form, and why.
    assert visitors.recognised(lan) is None
    splash = page(client.get("/", headers={"Accept-Language": "en"}))
    assert "Our texts have changed since you agreed" in splash and 'name="terms"' in splash


def test_a_changed_text_must_be_marked(owner):
    before = snapshot()
    refused = owner.form("/panel/settings", {"text-marketing_sms-en": "Offers by SMS, weekly."}, token_page="/panel/settings")
    assert refused.status_code == 422
    assert "Offers by SMS / Zalo, in English: mark the change as editorial or material; nothing was saved." in page(refused)
    assert snapshot() == before


def test_a_notice_without_a_required_section_is_refused_naming_it(owner):
    current = consent.template_of(consent.current(NOTICE, "en"))
    cut = current.replace("## Possible unwanted consequences", "## Other things").replace("## Data protection contact\n{dpo}", "")
    before = snapshot()
    refused = owner.form("/panel/settings", {f"text-{NOTICE}-en": cut, f"kind-{NOTICE}-en": "editorial",
                                             "store_name": "Renamed meanwhile"}, token_page="/panel/settings")
    assert refused.status_code == 422
    assert ("Privacy notice, in English: the privacy notice lacks these sections the law requires: Possible unwanted "
            "consequences; Data protection contact. Nothing was saved.") in page(refused)
    assert snapshot() == before


def test_an_example_contact_is_refused(owner):
    before = snapshot()
    refused = owner.form("/panel/settings", {"privacy_contact": "shop@example.org", "confirm": "1"}, token_page="/panel/settings")
    assert refused.status_code == 422 and "privacy_contact: this is an example address" in page(refused)
    assert snapshot() == before
    fine = owner.form("/panel/settings", {"privacy_contact": "privacy@caphe.vn", "dpo_contact": "Bà Lan <lan@caphe.vn>",
                                          "confirm": "1"}, token_page="/panel/settings")
    assert fine.status_code == 422  # "<" is refused in a contact: the notice is HTML-escaped, but never stored
    fine = owner.form("/panel/settings", {"privacy_contact": "privacy@caphe.vn", "dpo_contact": "Bà Lan, lan@caphe.vn",
                                          "confirm": "1"}, token_page="/panel/settings")
    assert fine.status_code == 200
    assert "Bà Lan, lan@caphe.vn" in consent.current(NOTICE, "vi").text


def test_the_entrance_sign_prints_in_both_languages_with_the_notice_qr(as_role, app):
    settings = app.extensions["footfall"].settings
    url = notice_url(settings)
    assert url == "http://portal.test:8080/privacy"
    response = as_role("manager").get("/panel/sign")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert f'<img src="{qr_data_uri(url)}"' in text and text.count(url) >= 2
    assert "@page{size:A5 portrait" in text
    assert "WiFi analytics in use" in text and "Mạng WiFi có phân tích lượt ghé thăm" in text
    assert "Cà Phê Test" in html.unescape(text)
    assert "@page{size:A4 portrait" in as_role("owner").get("/panel/sign?size=a4").get_data(as_text=True)
    assert "@page{size:A5 portrait" in as_role("owner").get("/panel/sign?size=<script>").get_data(as_text=True)
    assert as_role("analyst").get("/panel/sign").status_code == 403


def test_every_placeholder_and_sign_string_is_in_both_languages(owner):
    from portal.i18n_catalogs import texts
    from portal.policy_texts import PLACEHOLDERS
    vi, en = texts("vi"), texts("en")
    keys = [f"ph_{name}" for name in PLACEHOLDERS] + ["sign_title", "sign_counts", "sign_air", "sign_choice", "sign_more",
                                                      "sign_controller", "asked_again_count", "err_text_sections"]
    for key in keys:
        assert vi.get(key) and en.get(key) and vi[key] != en[key], key
    shown = page(owner.get("/panel/settings", headers={"Accept-Language": "vi"}))
    assert "{organisations}</code>: tên mọi tổ chức tham gia" in shown


def test_a_new_retention_is_the_owners_call_editorial_or_material(owner, visitors):
    device, lead = signed_up(visitors)
    before = snapshot()
    shown = owner.form("/panel/settings", {"retention_days": "730"}, token_page="/panel/settings")
    text = page(shown)
    assert shown.status_code == 200 and "These texts change what they promise (retention)" in text
    assert re.search(r"Privacy notice, in English <span class=\"muted\">\(material \(asks people again\): 1 returning guests", text)
    unmarked = owner.form("/panel/settings", {"retention_days": "730", "confirm": "1"}, token_page="/panel/settings")
    assert unmarked.status_code == 422 and "Mark the change of these texts as editorial or material" in page(unmarked)
    assert snapshot() == before
    done = owner.form("/panel/settings", {"retention_days": "730", "confirm": "1", "rerender_kind": "material"},
                      token_page="/panel/settings")
    assert done.status_code == 200
    notice = consent.current(NOTICE, "en")
    assert "730 days after your last visit" in notice.text and notice.material is True
    assert consent.stale_purposes(lead) == {"wifi_terms", "marketing_email"}
    assert visitors.recognised(device) is None
