"""The gettext catalogs: complete in every language, holding every key the code and templates use,
compiled from the .po sources, and Babel's formats per language; the tool that adds keys."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from portal import i18n, i18n_catalogs
from portal.core.purposes import LANGUAGES, PURPOSES

ROOT = Path(__file__).resolve().parent.parent
PORTAL = ROOT / "portal"
TEMPLATES = PORTAL / "templates"
SNAKE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")


def _sources(pattern: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(PORTAL.rglob(pattern)))


def audit_actions() -> set[str]:
    """Every action the code writes to the audit log (literal second argument, or a named constant)."""
    code = _sources("*.py")
    found = set(re.findall(r'AuditLog\.record\([^,()]+(?:\([^()]*\))?, *"([a-z0-9_.]+)"', code))
    found |= set(re.findall(r'register_failure\([^,]+, *[^,]+, *"([a-z0-9_]+)"', code))
    found |= set(re.findall(r'\b[A-Z_]*ACTION = "([a-z0-9_.]+)"', code))
    # Conditionals: set_disabled writes account_disabled or account_enabled; a webhook's switch
    # "webhook_" + enabled/disabled.
    found |= {"account_enabled", "webhook_enabled", "webhook_disabled", "automation_off"}
    return {action for action in found if not action.endswith("_")}


def test_every_catalog_translates_every_key():
    assert set(i18n_catalogs.languages()) == set(LANGUAGES), "one catalog per language of portal.core.purposes"
    assert i18n_catalogs.missing() == []


def test_no_catalog_entry_is_fuzzy_empty_or_the_key_itself():
    for language in i18n_catalogs.languages():
        for m in i18n_catalogs.read(language):
            if m.id:
                assert m.string and not m.fuzzy, (language, m.id)
                assert m.string != m.id or not SNAKE.fullmatch(m.id), (language, m.id)


def test_vietnamese_is_written_with_its_diacritics():
    vi = i18n_catalogs.texts("vi")
    marked = sum(1 for text in vi.values() if re.search(r"[ăâđêôơưàáạảãèéẹẻẽìíịỉĩòóọỏõùúụủũỳýỵỷỹ]", text, re.I))
    assert marked / len(vi) > 0.9
    assert vi["stage_probe"] != "Yêu cầu bị chặn"  # the funnel's first stage is phones checking, not blocked requests


def test_every_key_a_template_names_is_in_the_catalogs():
    keys = i18n_catalogs.known_keys()
    text = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATES.rglob("*.html"))
    used = set(re.findall(r"\bt\('([a-z0-9_]+)'\)", text))
    assert len(used) > 150
    assert sorted(used - keys) == []


def test_every_key_the_code_names_is_in_the_catalogs():
    keys = i18n_catalogs.known_keys()
    code = _sources("*.py")
    used = set(re.findall(r'\b(?:translate|t)\("([a-z0-9_]+)"', code))
    used |= set(re.findall(r'"((?:err|alert)_[a-z0-9_]+)"', code))
    used |= {"err_" + m for m in re.findall(r'(?:Desk|Compliance)Error\("([a-z0-9_]+)"\)', code)}
    # An account's refusal reads as err_<code>, or err_login_<code> on the sign-in page.
    used |= {"err_" + m if "err_" + m in keys else "err_login_" + m
             for m in re.findall(r'AccountError\("([a-z0-9_]+)"\)', code)}
    used |= {"err_code_" + m for m in re.findall(r'VerificationError\("([a-z0-9_]+)"\)', code)}
    used |= {"err_v_" + m for m in re.findall(r'VerificationError\("([a-z0-9_]+)"\)', code)}
    used |= {"err_" + m for m in re.findall(r'errors\[[^]]+\] = "([a-z0-9_]+)"', code)}
    used |= {"err_" + m for m in re.findall(r'\{"[a-z]+": "([a-z0-9_]+)"\}\)', _sources("visitor*.py"))}
    used = {key for key in used if not key.endswith("_")}  # a prefix: t("doc_" + name) (families: next test)
    assert len(used) > 60
    assert sorted(used - keys) == []


def test_every_name_a_page_puts_into_a_key_is_in_the_catalogs():
    """Keys built from a value (t('purpose_' ~ p)): every value each family can take."""
    from portal import accounts, funnel, privacy, store_settings
    from portal.core.audience import KINDS as EXPORT_KINDS
    from portal.core.segment_rules import BUILTIN, RULE_FIELDS, TEXT_FIELDS
    from portal.policy_texts import DOCUMENTS

    keys = i18n_catalogs.known_keys()
    wanted = ({f"purpose_{p}" for p in PURPOSES} | {f"role_{r}" for r in accounts.ROLES}
              | {f"lang_{lang}" for lang in LANGUAGES} | {f"segment_{k}" for k in BUILTIN}
              | {f"setting_{name}" for name in store_settings.EDITABLE} | {f"kind_{k}" for k in privacy.REQUEST_KINDS}
              | {f"export_{k}" for k in EXPORT_KINDS} | {f"stage_{s}" for s in funnel.STAGES}
              | {f"rule_{f}" for f in (*RULE_FIELDS, *TEXT_FIELDS)} | {f"audit_{a.replace('.', '_')}" for a in audit_actions()})
    assert len(audit_actions()) > 40
    assert all(f"purpose_{d}" in keys or f"doc_{d}" in keys for d in DOCUMENTS)
    assert sorted(wanted - keys) == []


def test_translate_falls_back_to_english_then_to_the_key():
    assert i18n.translate("nav_leads", "vi") == "Khách hàng"
    assert i18n.translate("nav_leads", "en") == "Leads"
    assert i18n.translate("no_such_key_anywhere", "vi") == "no_such_key_anywhere"


def test_babel_formats_dates_and_numbers_per_language():
    day = datetime.date(2026, 3, 5)
    assert i18n.format_date(day, "vi") == "05/03/2026"
    assert i18n.format_date(day, "en") == "5 Mar 2026"
    assert i18n.format_date(day, "vi", short=True) == "05/03"
    stamp = datetime.datetime(2026, 3, 5, 14, 7, tzinfo=datetime.timezone.utc)
    local = stamp.astimezone()
    assert i18n.format_datetime(stamp, "vi") == local.strftime("%H:%M %d/%m/%Y")
    assert i18n.format_number(1234567, "vi") == "1.234.567"
    assert i18n.format_number(1234567, "en") == "1,234,567"
    assert i18n.format_percent(45.5, "vi") == "45,5%"
    assert i18n.format_percent(45.5, "en") == "45.5%"


def test_compiled_catalogs_go_to_the_cache_dir_and_follow_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("FOOTFALL_CACHE_DIR", str(tmp_path / "cache"))
    directory = i18n_catalogs._compiled.__wrapped__(i18n_catalogs.sources_hash())  # not the process's cached one
    assert directory.parent == tmp_path / "cache"
    for language in LANGUAGES:
        assert (directory / language / "LC_MESSAGES" / "messages.mo").stat().st_size > 1000
    assert not list(PORTAL.rglob("*.mo")), "compiled catalogs are never in the tree"
    assert "*.mo" in (ROOT / ".gitignore").read_text().split()


@pytest.fixture
def scratch_catalogs(tmp_path, monkeypatch):
    """A copy of the catalogs the tool may change."""
    import shutil
    shutil.copytree(i18n_catalogs.TRANSLATIONS, tmp_path / "translations")
    monkeypatch.setattr(i18n_catalogs, "TRANSLATIONS", tmp_path / "translations")
    return tmp_path


def test_import_dict_carries_new_keys_over_and_reports_changed_ones(scratch_catalogs, capsys):
    source = scratch_catalogs / "i18n_branch.py"
    source.write_text(
        'MESSAGES: dict[str, dict[str, str]] = {\n'
        '    "nav_leads": {"en": "People", "vi": "Mọi người"},\n'
        '    "fresh_key": {"en": "Fresh", "vi": "Mới tinh"},\n'
        '}\n'
        'MESSAGES.update({"fresher_key": {"en": "Fresher", "vi": "Mới hơn"}})\n'
        'OTHER = {k: v for k, v in MESSAGES.items()}\n', encoding="utf-8")
    assert i18n_catalogs.main(["import-dict", str(source)]) == 0
    out, err = capsys.readouterr()
    assert "en: + fresh_key" in out and "vi: + fresher_key" in out
    assert "nav_leads" in err and "Mọi người" in err
    assert i18n_catalogs.texts("vi")["fresh_key"] == "Mới tinh"
    assert i18n_catalogs.texts("en")["nav_leads"] == "Leads"  # kept: --replace takes the dict's
    assert i18n_catalogs.main(["import-dict", "--replace", str(source)]) == 0
    assert i18n_catalogs.texts("en")["nav_leads"] == "People"
    assert i18n_catalogs.main(["check"]) == 0


def test_check_fails_on_a_key_one_catalog_lacks(scratch_catalogs, capsys):
    catalog = i18n_catalogs.read("en")
    catalog.add("only_in_english", "Only in English")
    i18n_catalogs.write(catalog, "en")
    assert i18n_catalogs.main(["check"]) == 1
    assert "vi: only_in_english" in capsys.readouterr().out


def test_a_new_language_is_a_new_catalog_listing_what_to_translate(scratch_catalogs, capsys):
    assert i18n_catalogs.main(["new-language", "th"]) == 0
    assert "th" in i18n_catalogs.languages()
    assert i18n_catalogs.main(["check"]) == 1
    assert "th: nav_leads" in capsys.readouterr().out


def test_a_file_without_message_dicts_is_refused(tmp_path, capsys):
    source = tmp_path / "nothing.py"
    source.write_text("X = 1\n", encoding="utf-8")
    assert i18n_catalogs.main(["import-dict", str(source)]) == 2
    assert "no {key: {language: text}} dict literal" in capsys.readouterr().err


def test_import_dict_with_a_base_is_a_three_way_merge(scratch_catalogs, capsys):
    """A branch's dict against the dict it started from: its new keys and its own changes are
    taken; what it left alone does not undo the catalog's newer text; both changed is reported."""
    base = scratch_catalogs / "base.py"
    base.write_text('M = {"nav_leads": {"en": "Leads", "vi": "Khách hàng"},\n'
                    '     "stage_probe": {"en": "Captive requests", "vi": "Yêu cầu bị chặn"},\n'
                    '     "nav_audit": {"en": "Audit log", "vi": "Nhật ký"},\n'
                    '     "role_owner": {"en": "owner", "vi": "chủ"}}\n', encoding="utf-8")
    theirs = scratch_catalogs / "theirs.py"
    theirs.write_text('M = {"nav_leads": {"en": "People", "vi": "Khách hàng"},\n'        # only the branch changed en
                      '     "stage_probe": {"en": "Captive requests", "vi": "Yêu cầu bị chặn"},\n'  # untouched there
                      '     "nav_audit": {"en": "Audit log", "vi": "Nhật ký"},\n'
                      '     "role_owner": {"en": "owner", "vi": "chủ quán"},\n'           # both changed vi
                      '     "brand_new": {"en": "New", "vi": "Mới"}}\n', encoding="utf-8")
    assert i18n_catalogs.main(["import-dict", str(theirs), "--base", str(base)]) == 0
    out, err = capsys.readouterr()
    en, vi = i18n_catalogs.texts("en"), i18n_catalogs.texts("vi")
    assert en["nav_leads"] == "People" and vi["nav_leads"] == "Khách hàng"
    assert en["stage_probe"] != "Captive requests" and vi["stage_probe"] != "Yêu cầu bị chặn"
    assert vi["role_owner"] == "chủ cửa hàng" and "vi: role_owner" in err
    assert en["brand_new"] == "New" and vi["brand_new"] == "Mới"
    assert "stage_probe" not in out + err


def test_every_translation_has_the_same_placeholders_as_english():
    """A translated text with a missing, extra or broken {name} would fail only when shown (a 500)."""
    import string
    formatter = string.Formatter()

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in formatter.parse(text) if name is not None}

    english = i18n_catalogs.texts("en")
    for language in i18n_catalogs.languages():
        for key, text in i18n_catalogs.texts(language).items():
            assert fields(text) == fields(english[key]), (language, key)
