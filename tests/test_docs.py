"""Documents generated from the code fail here when they drift: the README's command reference and
layout, docs/privacy.md; and the modules' pointers to the architecture document lead somewhere."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from portal import consent
from portal.cli import main
from portal.cli_docs import commands_markdown
from portal.config import load_settings
from portal.db import database
from portal.privacy_record import render
from portal.privacy_record_sources import default_texts, published_texts

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGES = ("portal", "collector", "central")


def _section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", README.read_text(), re.S)
    assert match, f"README lacks the {name} markers"
    return match.group(1)


def _all_commands(group: click.Group, path: str = "footfall"):
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _all_commands(command, f"{path} {name}")


def test_readme_command_reference_is_current():
    assert _section("commands").strip() == commands_markdown(main), \
        "README command reference is stale: run `footfall commands --markdown`"


def test_command_reference_names_every_command_and_option():
    text = commands_markdown(main)
    for path, command in _all_commands(main):
        assert f"- `{path}" in text, f"{path} missing from the command reference"
        for param in command.params:
            if isinstance(param, click.Option) and "--config" not in param.opts:
                assert param.opts[-1] in text, f"{path} {param.opts[-1]} missing"


def test_commands_markdown_is_what_the_command_prints():
    result = CliRunner().invoke(main, ["commands", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == commands_markdown(main)


def _modules() -> list[tuple[str, str]]:
    """(package, name as the layout writes it): every module but __init__ and numbered migrations."""
    found = []
    for package in PACKAGES:
        base = ROOT / package
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base).as_posix()
            if path.name == "__init__.py" or relative.startswith("migrations/"):
                continue
            found.append((package, relative))
        for sub in sorted(p for p in base.iterdir() if (p / "__init__.py").is_file()):
            found.append((package, f"{sub.name}/"))
    return found


def test_readme_layout_names_every_module():
    layout = _section("layout")
    bullets = {package: re.search(rf"^- `{package}/` — (.*?)(?=^- `|\Z)", layout, re.S | re.M) for package in PACKAGES}
    missing = []
    for package, name in _modules():
        assert bullets[package], f"the layout has no bullet for {package}/"
        if f"`{name}`" not in bullets[package].group(1):
            missing.append(f"{package}/{name}")
    assert not missing, f"README layout does not name: {', '.join(missing)}"


def test_layout_finds_the_modules_it_checks():
    # The check above must be able to fail: it sees nested modules and subpackages.
    names = {f"{p}/{n}" for p, n in _modules()}
    assert {"portal/gateway/isolation.py", "portal/panel/", "collector/parse.py", "central/ingest.py"} <= names


def test_privacy_record_is_current():
    expected = render(load_settings(environ={}))
    assert (ROOT / "docs" / "privacy.md").read_text() == expected, \
        "docs/privacy.md is stale: run `footfall privacy-record --defaults > docs/privacy.md` with default settings"


def test_privacy_record_follows_the_settings():
    s = load_settings(environ={}, controller_name="Công ty Cà Phê", privacy_contact="dpo@caphe.vn",
                      retention_days=90, central_url="https://central.caphe.vn/", probe_interface="mon0",
                      panel_require_2fa=False)
    text = render(s)
    assert "**Công ty Cà Phê**" in text and "dpo@caphe.vn" in text
    assert "deleted 90 days (`retention_days`)" in text
    assert "central store at `central.caphe.vn`" in text and "nothing leaves the appliance" not in text
    assert "captured on `mon0`" in text
    assert "TOTP two-factor **not required**" in text


def test_privacy_record_hashes_are_the_ones_consents_record(app, settings):
    # The portal published its texts at start; the record shows the same SHA-256 for each.
    text = render(settings, published_texts(settings))
    with database.connection_context():
        for document in ("wifi_terms", "ad_audiences", "privacy_notice"):
            for language in consent.LANGUAGES:
                version = consent.current(document, language)
                assert f"`{document}` ({language}, sha256 `{version.sha256[:16]}…`)" in text
    assert published_texts(settings) == default_texts(settings)


def test_privacy_record_shows_the_text_the_owner_published(app, settings):
    edited = "Send me Cà Phê Test's weekly coupons by email. Optional; withdraw any time."
    with database.connection_context(), database.atomic():
        consent.publish("marketing_email", "en", edited)
    runner = CliRunner()
    env = {"FOOTFALL_DATA_DIR": settings.data_dir, "FOOTFALL_STORE_NAME": settings.store_name}
    shown = runner.invoke(main, ["privacy-record"], env=env)
    assert shown.exit_code == 0, shown.output
    assert edited in shown.output and consent.text_sha256(edited)[:16] in shown.output
    assert "published in this appliance's database" in shown.output
    defaults = runner.invoke(main, ["privacy-record", "--defaults"], env=env)
    assert defaults.exit_code == 0 and edited not in defaults.output


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_cites_a_missing_design_document(package):
    for path in (ROOT / package).rglob("*.py"):
        assert "DESIGN.md" not in path.read_text(), f"{path} cites DESIGN.md, which the repository does not have"
    assert (ROOT / "docs" / "architecture.md").is_file()


def test_architecture_names_every_writer_and_gateway_driver():
    from portal.db import WRITERS

    text = (ROOT / "docs" / "architecture.md").read_text()
    for process, tables in WRITERS.items():
        assert f"**{process}**" in text
        for table in tables - {"*"}:
            assert f"`{table}`" in text, f"docs/architecture.md does not say {process} writes {table}"
    for module in (ROOT / "portal" / "gateway").glob("*.py"):
        if module.name != "__init__.py":
            assert f"`{module.name}`" in text, f"docs/architecture.md does not describe gateway/{module.name}"


def test_the_longest_first_files_exist():
    """A renamed long file would silently lose its early start on `make test`'s workers."""
    from tests.conftest import LONGEST_FIRST
    assert [path for path in LONGEST_FIRST if not (ROOT / path).is_file()] == []
