"""deploy/install.sh and the systemd units: lint, dry run, idempotence, unit verification."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import have, require

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "deploy" / "install.sh"
UNITS = sorted((ROOT / "systemd").glob("*.service"))
HOST_PATHS = [Path(p) for p in ("/etc/footfall", "/etc/dnsmasq.d/footfall.conf", "/etc/hostapd/footfall.conf",
                                "/etc/sysctl.d/60-footfall.conf", "/etc/systemd/system/footfall-portal.service")]
BIN = str(Path(sys.executable).parent)


def install(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=120)


def test_shellcheck():
    require(have("shellcheck"), "Debian package shellcheck is not installed")
    done = subprocess.run(["shellcheck", str(INSTALL)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_dry_run_prints_every_change_and_makes_none():
    existed = {p: p.exists() for p in HOST_PATHS}
    done = install("--dry-run", "--guest-if", "wlan1", "--uplink-if", "eth1", "--ssid", "Cà Phê Guest")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("+ useradd --system", "dhcp-option=114,http://10.77.0.1:8080/api/captive", "ssid=Cà Phê Guest",
                     'iifname "wlan1" oifname "eth1" masquerade', "net.ipv4.ip_forward = 1",
                     "AmbientCapabilities=CAP_NET_ADMIN", "+ systemctl enable footfall-portal.service",
                     'iifname "wlan1" ether saddr != @authorized tcp dport 80 redirect to :8080', "would be made",
                     "+ footfall manager add owner --role owner", 'panel_networks = "127.0.0.0/8,::1/128"'):
        assert expected in out, expected
    assert {p: p.exists() for p in HOST_PATHS} == existed, "a dry run changed the host"


def test_files_are_idempotent(tmp_path):
    first = install("--root", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "0 file(s) written" not in first.stdout
    # Every process whose command this version has gets its unit.
    for unit in ("footfall-portal.service", "footfall-collector.service", "footfall-gateway.service"):
        assert (tmp_path / "etc/systemd/system" / unit).exists(), unit
    written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert (tmp_path / "etc/footfall/footfall.toml").stat().st_mode & 0o777 == 0o640
    second = install("--root", str(tmp_path))
    assert second.returncode == 0 and "0 file(s) written" in second.stdout
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == written


def test_generated_rulesets_load_in_a_namespace(tmp_path):
    require(os.geteuid() == 0 and have("nft") and have("ip"), "needs root, nft and ip")
    assert install("--root", str(tmp_path)).returncode == 0
    ns = f"ffdep{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for name in ("gateway.nft", "nat.nft"):
            done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(tmp_path / "etc/footfall" / name)],
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"{name}: {done.stderr}"
        listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "table inet footfall" in listing and "table ip footfall_nat" in listing
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.parametrize("args,message", [
    (["--guest-if", "wlan0;reboot"], "invalid guest interface"),
    (["--country", "vn"], "invalid --country"),
    (["--guest-ip", "10.77.0"], "invalid --guest-ip"),
    (["--store-name", 'a"b'], "store name"),
    (["--bogus"], "unknown option"),
    (["--admin-net", "10.0.0.0/8; rm -rf /"], "invalid --admin-net"),
])
def test_bad_options_are_refused_before_anything_happens(tmp_path, args, message):
    done = install("--root", str(tmp_path), *args)
    assert done.returncode != 0 and message in done.stderr
    assert not any(tmp_path.iterdir())


def test_units_verify(tmp_path):
    require(have("systemd-analyze"), "systemd-analyze is not installed")
    footfall = shutil.which("footfall", path=BIN)
    assert footfall, "the footfall console script is not installed"
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/footfall/venv/bin/footfall", footfall))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("unit,capability", [("footfall-portal.service", "CAP_NET_ADMIN"),
                                             ("footfall-collector.service", "CAP_NET_RAW"),
                                             ("footfall-scheduler.service", ""), ("footfall-central.service", "")])
def test_units_are_hardened_with_only_the_capability_they_need(unit, capability):
    text = (ROOT / "systemd" / unit).read_text()
    for line in ("User=footfall", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "Restart=on-failure", f"CapabilityBoundingSet={capability}"):
        assert line in text.splitlines(), f"{unit}: {line}"
