"""Review of issue 12: panel_networks wide enough to hold the guest network opens the panel to
every guest, and nothing said so. The default guest LAN is 10.77.0.0/24 (deploy) or the address
of portal_url; an owner who lets the store LAN in with 10.0.0.0/8 or 192.168.0.0/16 let guests in.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from portal.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("networks", ["192.168.0.0/16", "127.0.0.0/8,192.168.4.0/24", "192.168.4.1/32"])
def test_panel_networks_holding_the_portals_guest_address_are_refused(tmp_path, networks):
    with pytest.raises(ConfigError, match="panel_networks"):
        load_settings(environ={}, data_dir=str(tmp_path), portal_url="http://192.168.4.1:8080", panel_networks=networks)


def test_panel_networks_beside_the_guest_network_are_accepted(tmp_path):
    """The check above can pass for the right reason only: the store LAN alone is fine, and so is
    loopback for a portal that guests reach on loopback (the demo) or by name (behind the TLS front)."""
    assert load_settings(environ={}, data_dir=str(tmp_path), portal_url="http://192.168.4.1:8080",
                         panel_networks="127.0.0.0/8,192.168.1.0/24").panel_networks
    assert load_settings(environ={}, data_dir=str(tmp_path), portal_url="http://127.0.0.1:8080",
                         panel_networks="127.0.0.0/8").panel_networks
    assert load_settings(environ={}, data_dir=str(tmp_path), portal_url="https://portal.test",
                         panel_networks="10.0.0.0/8").panel_networks


@pytest.mark.parametrize("admin_net", ["10.0.0.0/8", "10.77.0.128/25"])
def test_install_refuses_an_admin_net_that_holds_the_guest_lan(tmp_path, admin_net):
    done = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--root", str(tmp_path), "--admin-net", admin_net],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--admin-net" in done.stderr and "guest" in done.stderr, done.stderr
    assert not any(tmp_path.iterdir())


def test_install_takes_an_admin_net_beside_the_guest_lan(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--root", str(tmp_path), "--admin-net",
                           "192.168.1.0/24", "--privacy-contact", "privacy@caphe.vn"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'panel_networks = "127.0.0.0/8,::1/128,192.168.1.0/24"' in \
        (tmp_path / "etc/footfall/footfall.toml").read_text().splitlines()
