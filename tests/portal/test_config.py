import os
import re
from pathlib import Path

import pytest

from portal.config import SETTINGS, ConfigError, load_settings, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_without_file_or_environment():
    s = load_settings(environ={})
    assert s.default_region == "VN"
    assert s.gateway == "null"
    assert s.session_seconds == 14400


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "footfall.toml"
    path.write_text('store_name = "From file"\nsession_seconds = 30\nthreads = 4\n')
    s = load_settings(path, environ={"FOOTFALL_SESSION_SECONDS": "45"}, threads=2)
    assert (s.store_name, s.session_seconds, s.threads) == ("From file", 45, 2)


def test_config_path_from_environment(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text('store_id = "hcm-01"\n')
    assert load_settings(environ={"FOOTFALL_CONFIG": str(path)}).store_id == "hcm-01"


@pytest.mark.parametrize("environ", [
    {"FOOTFALL_SESSION_SECONDS": "ten"},
    {"FOOTFALL_SESSION_SECONDS": "0"},
    {"FOOTFALL_DEFAULT_LANGUAGE": "fr"},
    {"FOOTFALL_GATEWAY": "iptables"},
    {"FOOTFALL_PORTAL_URL": "javascript:alert(1)"},
])
def test_bad_values_are_refused_clearly(environ):
    with pytest.raises(ConfigError):
        load_settings(environ=environ)


def test_unknown_key_in_file_is_refused(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text("sesion_minutes = 5\n")
    with pytest.raises(ConfigError, match="sesion_minutes"):
        load_settings(path, environ={})


def test_broken_file_is_refused(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text("store_name = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path, environ={})


def test_every_setting_has_help_and_env_name():
    for s in SETTINGS:
        assert s.help.strip(), s.name
        assert s.env == "FOOTFALL_" + s.name.upper()


def test_readme_settings_table_is_the_generated_one():
    text = README.read_text()
    match = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert match, "README lacks the settings table markers"
    assert match.group(1).strip() == markdown_table(), "README settings table is stale: run `footfall settings --markdown`"
    for s in SETTINGS:
        assert f"`{s.name}`" in match.group(1)
