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
UNITS = sorted([*(ROOT / "systemd").glob("*.service"), *(ROOT / "systemd").glob("*.timer")])
HOST_PATHS = [Path(p) for p in ("/etc/footfall", "/etc/dnsmasq.d/footfall.conf", "/etc/hostapd/footfall.conf",
                                "/etc/sysctl.d/60-footfall.conf", "/etc/systemd/system/footfall-portal.service")]
BIN = str(Path(sys.executable).parent)


def install(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if "--privacy-contact" not in args:  # required on a first install
        args = (*args, "--privacy-contact", "privacy@caphe.vn")
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
    (["--privacy-contact", ""], "--privacy-contact is required on a first install"),
    (["--privacy-contact", "privacy@example.com"], "--privacy-contact privacy@example.com is an example address"),
    (["--privacy-contact", "Lan <lan@caphe.vn>"], "the privacy contact must be"),
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
        # The installed venv's programs, as this one's (the scheduler's unit runs its python -m).
        text = unit.read_text().replace("/opt/footfall/venv/bin/footfall", footfall)
        (tmp_path / unit.name).write_text(text.replace("/opt/footfall/venv/bin/python", str(Path(footfall).with_name("python"))))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, sorted(tmp_path.iterdir()))],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stdout + done.stderr


def test_the_central_purge_timer_is_installed_and_enabled_only_with_a_central(tmp_path):
    """Issue 15: `footfall central purge` runs daily from a timer where the central store is installed."""
    without = install("--root", str(tmp_path))
    assert without.returncode == 0, without.stderr
    assert not (tmp_path / "etc/systemd/system/footfall-central-purge.timer").exists()
    assert "footfall-central-purge" not in without.stdout
    (tmp_path / "etc/footfall/central.toml").write_text('central_dsn = "postgresql://footfall@127.0.0.1/footfall"\n')
    done = install("--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    units = tmp_path / "etc/systemd/system"
    timer = (units / "footfall-central-purge.timer").read_text().splitlines()
    service = (units / "footfall-central-purge.service").read_text().splitlines()
    assert "OnCalendar=*-*-* 04:15:00" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    assert "Type=oneshot" in service and any(line.endswith("/bin/footfall central purge") for line in service)
    assert "+ systemctl enable footfall-central-purge.timer" in done.stdout
    assert "systemctl enable footfall-central-purge.service" not in done.stdout  # started by its timer only
    for line in ("User=footfall", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
        assert line in service, line
    assert "0 file(s) written" in install("--root", str(tmp_path)).stdout  # idempotent


@pytest.mark.parametrize("unit,capability", [("footfall-portal.service", "CAP_NET_ADMIN"),
                                             ("footfall-collector.service", "CAP_NET_RAW"),
                                             ("footfall-scheduler.service", ""), ("footfall-central.service", "")])
def test_units_are_hardened_with_only_the_capability_they_need(unit, capability):
    text = (ROOT / "systemd" / unit).read_text()
    for line in ("User=footfall", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "Restart=on-failure", f"CapabilityBoundingSet={capability}"):
        assert line in text.splitlines(), f"{unit}: {line}"


# -- HTTPS front (nginx) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A throwaway CA's certificate for portal.test, another for elsewhere.test, and their keys."""
    import trustme  # a dev dependency: missing, it fails (no skip)

    tmp = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    paths = {}
    for name in ("portal.test", "elsewhere.test"):
        leaf = ca.issue_cert(name)
        paths[name] = (tmp / f"{name}.pem", tmp / f"{name}.key")
        leaf.cert_chain_pems[0].write_to_path(str(paths[name][0]))
        leaf.private_key_pem.write_to_path(str(paths[name][1]))
        paths[name][1].chmod(0o600)
    return paths


def tls_args(certs, host="portal.test", key_of=None):
    cert, key = certs[host]
    return ["--tls-cert", str(cert), "--tls-key", str(certs[key_of or host][1]), "--portal-host", host]


def test_dry_run_with_a_certificate_sets_up_the_https_front(certs):
    done = install("--dry-run", *tls_args(certs))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in ("dhcp-option=114,https://portal.test/api/captive", "host-record=portal.test,10.77.0.1",
                     "+ write /etc/nginx/conf.d/footfall.conf", f"ssl_certificate {certs['portal.test'][0]};",
                     "listen 10.77.0.1:443 ssl http2 default_server;", "listen 10.77.0.1:8080 default_server;",
                     "server 127.0.0.1:8080;", "proxy_set_header X-Forwarded-For $remote_addr;",
                     "return 301 https://portal.test$request_uri;", "+ nginx -t -q",
                     "After=footfall-guest-address.service", "Visitors are sent to https://portal.test/"):
        assert expected in out, expected


def test_tls_front_rendered_by_the_deploy_script_passes_nginx_t(tmp_path, certs):
    from tests.e2e import nginx

    nginx.need_nginx()
    http_port = nginx.free_port("127.0.0.2")
    https_port = nginx.free_port("127.0.0.2")
    done = install("--root", str(tmp_path / "root"), "--no-hostapd", "--guest-ip", "127.0.0.2",
                   "--portal-port", str(http_port), "--https-port", str(https_port), *tls_args(certs))
    assert done.returncode == 0, done.stderr
    site = tmp_path / "root/etc/nginx/conf.d/footfall.conf"
    checked = nginx.config_test(nginx.main_config(tmp_path / "nginx", site))
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr
    # The same check refuses a site whose key is not the certificate's (so it is a real check).
    site.write_text(site.read_text().replace(str(certs["portal.test"][1]), str(certs["elsewhere.test"][1])))
    refused = nginx.config_test(nginx.main_config(tmp_path / "nginx", site))
    assert refused.returncode == 1 and "key values mismatch" in refused.stderr, refused.stderr


@pytest.mark.parametrize("args,message", [
    (lambda c: tls_args(c)[:2], "needs all three"),
    (lambda c: tls_args(c, key_of="elsewhere.test"), "is not the private key of"),
    (lambda c: [*tls_args(c, host="elsewhere.test")[:4], "--portal-host", "portal.test"], "is not valid for portal.test"),
    (lambda c: [*tls_args(c)[:4], "--portal-host", "portal.test;evil"], "invalid --portal-host"),
    (lambda c: ["--tls-cert", "/nonexistent.pem", *tls_args(c)[2:]], "cannot read /nonexistent.pem"),
    (lambda c: [*tls_args(c), "--https-port", "8080"], "must differ"),
    (lambda c: [*tls_args(c), "--https-port", "70000"], "invalid --https-port"),
    (lambda c: ["--owe", "--no-hostapd"], "--owe needs hostapd"),
    (lambda c: ["--owe", "--guest-if", "wlan0123456789"], "too long for its twin"),
])
def test_bad_https_and_owe_options_are_refused_before_anything_happens(tmp_path, certs, args, message):
    done = install("--root", str(tmp_path), *args(certs))
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not any(tmp_path.iterdir())


def test_a_path_nginx_would_misread_is_refused(tmp_path, certs):
    odd = tmp_path / "odd dir;"
    odd.mkdir()
    cert = odd / "cert.pem"
    cert.write_bytes(certs["portal.test"][0].read_bytes())
    done = install("--root", str(tmp_path / "root"), "--tls-cert", str(cert), *tls_args(certs)[2:])
    assert done.returncode == 1 and "letters, digits and ._/@+- only" in done.stderr
    assert not (tmp_path / "root").exists()


def test_reruns_keep_the_owners_settings_and_switch_https_on_and_off(tmp_path, certs):
    toml = tmp_path / "etc/footfall/footfall.toml"
    assert install("--root", str(tmp_path)).returncode == 0
    toml.write_text(toml.read_text().replace('store_name = "Footfall WiFi"', 'store_name = "Cà Phê"'))
    on = install("--root", str(tmp_path), *tls_args(certs))
    assert on.returncode == 0, on.stderr
    lines = toml.read_text().splitlines()
    for line in ('store_name = "Cà Phê"', 'listen_host = "127.0.0.1"', 'portal_url = "https://portal.test"',
                 'trusted_proxy = "127.0.0.1"', "listen_port = 8080", 'privacy_contact = "privacy@caphe.vn"'):
        assert line in lines, line
    moved = install("--root", str(tmp_path), *tls_args(certs), "--privacy-contact", "Bà Lan, 0901 234 567")
    assert moved.returncode == 0, moved.stderr
    assert 'privacy_contact = "Bà Lan, 0901 234 567"' in toml.read_text().splitlines()
    assert install("--root", str(tmp_path), *tls_args(certs), "--privacy-contact", "").returncode == 0  # a re-run keeps it
    assert 'privacy_contact = "Bà Lan, 0901 234 567"' in toml.read_text().splitlines()
    install("--root", str(tmp_path), *tls_args(certs), "--privacy-contact", "privacy@caphe.vn")
    assert (tmp_path / "etc/nginx/conf.d/footfall.conf").exists()
    assert install("--root", str(tmp_path), *tls_args(certs)).stdout.count("wrote ") == 0
    off = install("--root", str(tmp_path))
    assert off.returncode == 0, off.stderr
    lines = toml.read_text().splitlines()
    for line in ('store_name = "Cà Phê"', 'listen_host = "10.77.0.1"', 'portal_url = "http://10.77.0.1:8080"',
                 'trusted_proxy = ""'):
        assert line in lines, line
    assert not (tmp_path / "etc/nginx/conf.d/footfall.conf").exists()
    assert not (tmp_path / "etc/systemd/system/nginx.service.d/footfall.conf").exists()
    assert "dhcp-option=114,http://10.77.0.1:8080/api/captive" in (tmp_path / "etc/dnsmasq.d/footfall.conf").read_text()


# -- hostapd: ap_isolate and OWE transition mode ---------------------------------------------------

def hostapd_sections(path: Path) -> list[dict[str, str]]:
    """The file as hostapd reads it: key=value lines, a new BSS at each `bss=`."""
    sections: list[dict[str, str]] = [{}]
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if key == "bss":
            sections.append({})
        assert key not in sections[-1], f"{key} twice in one BSS"
        sections[-1][key] = value
    return sections


def test_hostapd_open_ssid_isolates_guests(tmp_path):
    # & and | mean something to sed, which fills the templates in.
    assert install("--root", str(tmp_path), "--ssid", "Cà Phê & Bánh | Guest").returncode == 0
    [bss] = hostapd_sections(tmp_path / "etc/hostapd/footfall.conf")
    assert bss["interface"] == "wlan0" and bss["ssid"] == "Cà Phê & Bánh | Guest"
    assert bss["ap_isolate"] == "1" and bss["wpa"] == "0" and bss["auth_algs"] == "1"
    assert "owe_transition_ifname" not in bss and "bridge" not in bss
    assert not (tmp_path / "etc/systemd/system/hostapd.service.d/footfall.conf").exists()


def test_hostapd_owe_transition_mode_is_as_hostapd_documents_it(tmp_path):
    done = install("--root", str(tmp_path), "--owe", "--ssid", "Cà Phê Guest")
    assert done.returncode == 0, done.stderr
    open_bss, owe_bss = hostapd_sections(tmp_path / "etc/hostapd/footfall.conf")
    # The open BSS: unchanged for phones without OWE, and it names its twin.
    assert open_bss["interface"] == "wlan0" and open_bss["ssid"] == "Cà Phê Guest" and open_bss["wpa"] == "0"
    assert open_bss["owe_transition_ifname"] == "wlan0-owe" and open_bss["ap_isolate"] == "1"
    # The twin: hidden, OWE with CCMP and required PMF, naming the open BSS back.
    assert owe_bss["bss"] == "wlan0-owe" and owe_bss["ignore_broadcast_ssid"] == "1"
    assert owe_bss["ssid"] != open_bss["ssid"] and 1 <= len(owe_bss["ssid"].encode()) <= 32
    assert (owe_bss["wpa"], owe_bss["wpa_key_mgmt"], owe_bss["rsn_pairwise"], owe_bss["ieee80211w"]) == ("2", "OWE", "CCMP", "2")
    assert owe_bss["owe_transition_ifname"] == "wlan0" and owe_bss["ap_isolate"] == "1"
    # Both BSSes are ports of one bridge, the guest LAN everything else is set up on.
    assert open_bss["bridge"] == owe_bss["bridge"] == "br-footfall"
    toml = (tmp_path / "etc/footfall/footfall.toml").read_text().splitlines()
    assert 'guest_interface = "br-footfall"' in toml
    assert "interface=br-footfall" in (tmp_path / "etc/dnsmasq.d/footfall.conf").read_text().splitlines()
    assert 'iifname "br-footfall"' in (tmp_path / "etc/footfall/gateway.nft").read_text()
    unit = (tmp_path / "etc/systemd/system/footfall-guest-address.service").read_text().splitlines()
    assert "ExecStartPre=-/usr/sbin/ip link add br-footfall type bridge" in unit
    assert "ExecStart=/usr/sbin/ip addr replace 10.77.0.1/24 dev br-footfall" in unit
    # ap_isolate stops at each BSS; isolated bridge ports keep the two BSSes' guests apart too.
    dropin = (tmp_path / "etc/systemd/system/hostapd.service.d/footfall.conf").read_text().splitlines()
    assert dropin[1:] == ["ExecStartPost=/usr/sbin/bridge link set dev wlan0 isolated on",
                          "ExecStartPost=/usr/sbin/bridge link set dev wlan0-owe isolated on"]
    # Same options, same files.
    assert install("--root", str(tmp_path), "--owe", "--ssid", "Cà Phê Guest").stdout.count("wrote ") == 0


@pytest.mark.parametrize("owe", [False, True])
def test_debians_hostapd_reads_the_rendered_file_without_error(tmp_path, owe):
    require(have("hostapd") or Path("/usr/sbin/hostapd").exists(), "Debian package hostapd is not installed")
    # Interface names no radio has: hostapd reads and checks the whole file, then fails to find the
    # radio (there is none here); it never touches a real one.
    args = ["--guest-if", "ffnoradio0"] + (["--owe"] if owe else [])
    assert install("--root", str(tmp_path), *args).returncode == 0
    prefix = ["unshare", "--net"] if os.geteuid() == 0 and have("unshare") else []
    done = subprocess.run([*prefix, "/usr/sbin/hostapd", "-dd", str(tmp_path / "etc/hostapd/footfall.conf")],
                          capture_output=True, text=True, timeout=30)
    out = done.stdout + done.stderr
    assert "errors found in configuration file" not in out and "unknown configuration item" not in out, out
    # It got past the configuration to the driver, with one BSS, or two with OWE.
    assert "Failed to initialize driver 'nl80211'" in out or "Could not read interface ffnoradio0" in out, out
    assert f"num_bss={2 if owe else 1} conf->num_bss={2 if owe else 1}" in out, out
    assert done.returncode != 0


@pytest.mark.parametrize("unit", ["footfall-portal.service", "footfall-collector.service", "footfall-scheduler.service"])
def test_long_running_units_are_watched(unit):
    """Issue 10: a hung process is restarted; portal/health.py sends READY=1 and WATCHDOG=1."""
    text = (ROOT / "systemd" / unit).read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=60s", "Restart=on-failure"):
        assert f"\n{line}\n" in text, f"{unit} lacks {line}"
