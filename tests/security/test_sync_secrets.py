"""The chain's secrets never travel on a command line, an example key is never accepted, and
batches of personal data never travel in clear text (issue 12, item 7)."""
from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal import sync
from portal.cli import main
from portal.config import ConfigError, load_settings
from portal.identity import load_or_create_keys

ROOT = Path(__file__).resolve().parents[2]


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def store_dir(tmp_path):
    return {"FOOTFALL_DATA_DIR": str(tmp_path / "store")}


def enrolled(env) -> str:
    return load_or_create_keys(Path(env["FOOTFALL_DATA_DIR"]) / "keys.json").store_id


def keys_text(store=None, index=None) -> str:
    return f"store_key={b64(store or secrets.token_bytes(32))}\nindex_key={b64(index or secrets.token_bytes(32))}\n"


def enroll(env, *args, stdin=None):
    return CliRunner().invoke(main, ["sync", "enroll", "--store-id", "hcm-01", *args], env=env, input=stdin)


def test_keys_on_the_command_line_are_not_an_option(store_dir):
    result = enroll(store_dir, "--store-key", b64(secrets.token_bytes(32)), "--index-key", b64(secrets.token_bytes(32)))
    assert result.exit_code == 2 and "No such option '--store-key'" in result.output
    assert enrolled(store_dir) == ""


def test_keys_from_standard_input_enroll(store_dir):
    result = enroll(store_dir, stdin=keys_text())
    assert result.exit_code == 0, result.output
    assert enrolled(store_dir) == "hcm-01"


def test_keys_from_a_0600_file_enroll(store_dir, tmp_path):
    path = tmp_path / "hcm-01.keys"
    path.write_text(keys_text())
    path.chmod(0o600)
    assert enroll(store_dir, "--keys-file", str(path)).exit_code == 0
    assert enrolled(store_dir) == "hcm-01"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_keys_file_others_can_read_is_refused(store_dir, tmp_path, mode):
    path = tmp_path / "hcm-01.keys"
    path.write_text(keys_text())
    path.chmod(mode)
    result = enroll(store_dir, "--keys-file", str(path))
    assert result.exit_code == 1 and "readable by group or others" in result.output
    assert enrolled(store_dir) == ""


def test_a_symlinked_keys_file_is_refused(store_dir, tmp_path):
    real = tmp_path / "real.keys"
    real.write_text(keys_text())
    real.chmod(0o600)
    (tmp_path / "link.keys").symlink_to(real)
    result = enroll(store_dir, "--keys-file", str(tmp_path / "link.keys"))
    assert result.exit_code == 1 and "cannot open" in result.output
    assert enrolled(store_dir) == ""


@pytest.mark.parametrize("text,reason", [
    (keys_text(store=b"k" * 32), "store_key is not random"),
    (keys_text(index=bytes(32)), "index_key is not random"),
    (keys_text(store=bytes(range(8)) * 4), "store_key is not random"),
    (keys_text(store=secrets.token_bytes(16)), "store_key is 16 bytes"),
    ("store_key=not base64!\nindex_key=x\n", "store_key is not base64"),
    ("just one line\n", "expected two lines"),
], ids=["store-repeated", "index-zero", "store-pattern", "store-16-bytes", "not-base64", "one-line"])  # stable ids: workers collect alike
def test_example_short_or_malformed_keys_are_refused(store_dir, text, reason):
    result = enroll(store_dir, stdin=text)
    assert result.exit_code == 1 and reason in result.output
    assert enrolled(store_dir) == ""


def test_the_same_key_twice_is_refused(store_dir):
    key = secrets.token_bytes(32)
    result = enroll(store_dir, stdin=keys_text(store=key, index=key))
    assert result.exit_code == 1 and "are the same" in result.output


def test_add_store_writes_a_0600_keys_file_the_store_enrolls_from(central_settings, store_dir, tmp_path):
    env = {"FOOTFALL_DATA_DIR": central_settings.data_dir, "FOOTFALL_CENTRAL_DSN": central_settings.central_dsn,
           "FOOTFALL_CENTRAL_SCHEMA": central_settings.central_schema}
    path = tmp_path / "hcm-01.keys"
    added = CliRunner().invoke(main, ["central", "add-store", "hcm-01", "--name", "HCM", "--keys-file", str(path)], env=env)
    assert added.exit_code == 0, added.output
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "store_key" not in added.output and "--keys-file" in added.output
    again = CliRunner().invoke(main, ["central", "add-store", "hn-02", "--name", "HN", "--keys-file", str(path)], env=env)
    assert again.exit_code == 1 and "cannot create" in again.output  # never overwrites a key file
    assert enroll(store_dir, "--keys-file", str(path)).exit_code == 0
    assert enrolled(store_dir) == "hcm-01"


# -- example openNDS keys ------------------------------------------------------------------------

def example_faskey() -> str:
    text = (ROOT / "deploy" / "opennds.conf.example").read_text()
    return re.search(r"^faskey (\S+)$", text, re.M).group(1)


@pytest.mark.parametrize("faskey", [example_faskey(), "1234567890"])
def test_the_published_example_faskeys_are_refused(tmp_path, faskey):
    with pytest.raises(ConfigError, match="published example"):
        load_settings(environ={}, data_dir=str(tmp_path), gateway="opennds", opennds_faskey=faskey)
    load_settings(environ={}, data_dir=str(tmp_path), gateway="opennds", opennds_faskey=secrets.token_hex(8))


# -- transport -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url,allow", [("http://127.0.0.1:9", False), ("http://central.example:8090", True),
                                       ("http://192.0.2.10", True), ("ftp://central.example", True)])
def test_sync_refuses_clear_text_transport(url, allow):
    target = sync.Target(url, "hcm-01", secrets.token_bytes(32), allow_http=allow)
    with pytest.raises(sync.SyncError, match="must be https://"):
        sync.post(target, b"x", 1)


def test_the_push_job_refuses_an_http_central_unless_allowed(store_dir):
    env = {**store_dir, "FOOTFALL_CENTRAL_URL": "http://127.0.0.1:9"}
    assert enroll(store_dir, stdin=keys_text()).exit_code == 0
    refused = CliRunner().invoke(main, ["sync", "now"], env=env)
    assert refused.exit_code == 0 and "must be https://" in refused.output


def test_http_to_loopback_only_when_allowed():
    target = sync.Target("http://127.0.0.1:9", "hcm-01", secrets.token_bytes(32), allow_http=True)
    with pytest.raises(sync.SyncError, match="unreachable"):  # tried (nothing listens on port 9), not refused
        sync.post(target, b"x", 1)
