#!/usr/bin/env bash
# Install Footfall on a Raspberry Pi OS Bookworm / Debian 12 machine that becomes the gateway of
# a guest WiFi: packages, a venv, a system user, the guest gate (nftables), DHCP/DNS (dnsmasq,
# option 114), an open SSID (hostapd), forwarding and NAT, and the systemd units.
#
# Idempotent: a second run changes nothing that is already right. --dry-run prints every change
# it would make and makes none.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/install.sh [options]
  --dry-run            print every change, make none
  --guest-if IF        guest interface (default wlan0)
  --uplink-if IF       interface towards the internet (default eth0)
  --guest-ip IP        gateway address on the guest LAN, /24 (default 10.77.0.1)
  --ssid NAME          guest SSID (default "Free WiFi")
  --country CC         regulatory country code (default VN)
  --store-name NAME    store name shown to visitors (default "Footfall WiFi")
  --admin-net CIDR     the network store staff reach the manager panel from (default: this machine only)
  --no-hostapd         the guest interface is wired or another access point serves the SSID
  --source DIR         Footfall source to install (default: this repository)
  --prefix DIR         where the venv goes (default /opt/footfall)
  --root DIR           write the files under DIR and only print system commands
                       (for building an image, and for tests)
  -h, --help           this help
USAGE
}

DRY_RUN=0
ROOT=""
GUEST_IF=wlan0
UPLINK_IF=eth0
GUEST_IP=10.77.0.1
SSID="Free WiFi"
COUNTRY=VN
STORE_NAME="Footfall WiFi"
HOSTAPD=1
ADMIN_NET=""
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/footfall

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --guest-if) GUEST_IF="$2"; shift ;;
    --uplink-if) UPLINK_IF="$2"; shift ;;
    --guest-ip) GUEST_IP="$2"; shift ;;
    --ssid) SSID="$2"; shift ;;
    --country) COUNTRY="$2"; shift ;;
    --store-name) STORE_NAME="$2"; shift ;;
    --no-hostapd) HOSTAPD=0 ;;
    --admin-net) ADMIN_NET="$2"; shift ;;
    --source) SOURCE="$2"; shift ;;
    --prefix) PREFIX="$2"; shift ;;
    --root) ROOT="$(realpath -m "$2")"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

die() { echo "install.sh: $*" >&2; exit 1; }

valid_if() { [[ "$1" =~ ^[A-Za-z0-9_.@-]{1,15}$ ]]; }
valid_if "$GUEST_IF" || die "invalid guest interface name: $GUEST_IF"
valid_if "$UPLINK_IF" || die "invalid uplink interface name: $UPLINK_IF"
[[ "$GUEST_IP" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || die "invalid --guest-ip: $GUEST_IP"
[[ "$COUNTRY" =~ ^[A-Z]{2}$ ]] || die "invalid --country (two capital letters): $COUNTRY"
[[ "$SSID" =~ ^[^[:cntrl:]]{1,32}$ ]] || die "the SSID must be 1 to 32 printable characters"
[[ "$STORE_NAME" =~ ^[^[:cntrl:]\"\\]{1,80}$ ]] || die "the store name must be 1 to 80 printable characters, no quotes"
[ -f "$SOURCE/pyproject.toml" ] || die "no Footfall source at $SOURCE"
[ -z "$ADMIN_NET" ] || [[ "$ADMIN_NET" =~ ^[0-9a-fA-F:.]+/[0-9]{1,3}$ ]] || die "invalid --admin-net: $ADMIN_NET"
PANEL_NETWORKS="127.0.0.0/8,::1/128${ADMIN_NET:+,$ADMIN_NET}"

NET_PREFIX="${GUEST_IP%.*}"
PORTAL_URL="http://${GUEST_IP}:8080"
VENV="$PREFIX/venv"
FOOTFALL="$VENV/bin/footfall"
CHANGES=0
FILES_WRITTEN=0
# Commands change the running system: with --root they are printed like in a dry run.
PRINT_ONLY=$DRY_RUN
[ -n "$ROOT" ] && PRINT_ONLY=1

say() { echo "==> $*"; }

# run CMD...: do it, or in a dry run print it.
run() {
  CHANGES=$((CHANGES + 1))
  if [ "$PRINT_ONLY" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# render TEMPLATE: the template with every @NAME@ filled in.
render() {
  sed -e "s|@GUEST_IF@|${GUEST_IF}|g" -e "s|@UPLINK_IF@|${UPLINK_IF}|g" -e "s|@GUEST_IP@|${GUEST_IP}|g" \
      -e "s|@DHCP_FIRST@|${NET_PREFIX}.50|g" -e "s|@DHCP_LAST@|${NET_PREFIX}.250|g" \
      -e "s|@PORTAL_URL@|${PORTAL_URL}|g" -e "s|@SSID@|${SSID}|g" -e "s|@COUNTRY@|${COUNTRY}|g" \
      -e "s|@STORE_NAME@|${STORE_NAME}|g" -e "s|@PANEL_NETWORKS@|${PANEL_NETWORKS}|g" "$1"
}

# put PATH MODE [GROUP] < CONTENT: write the file only when its content or mode differs.
put() {
  local path="$ROOT$1" mode="$2" group="${3:-root}" tmp
  [ -n "$ROOT" ] && group=$(id -gn)
  tmp="$(mktemp)"
  cat > "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %a "$path")" = "$mode" ]; then
    rm -f "$tmp"
    return 0
  fi
  CHANGES=$((CHANGES + 1))
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ write $path (mode $mode):"
    sed 's/^/|   /' "$tmp"
    rm -f "$tmp"
  else
    install -D -m "$mode" -g "$group" "$tmp" "$path"
    rm -f "$tmp"
    FILES_WRITTEN=$((FILES_WRITTEN + 1))
    echo "wrote $path"
  fi
}

if [ "$PRINT_ONLY" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "run as root (or try --dry-run)"
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  [ "${VERSION_CODENAME:-}" = bookworm ] || echo "warning: tested on Debian 12 / Raspberry Pi OS Bookworm, this is ${PRETTY_NAME:-unknown}" >&2
fi

say "packages"
PACKAGES=(python3-venv nftables conntrack dnsmasq ieee-data)
[ "$HOSTAPD" = 1 ] && PACKAGES+=(hostapd)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

say "system user"
if ! id footfall >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/footfall --no-create-home --shell /usr/sbin/nologin footfall
fi
if [ ! -d /var/lib/footfall ] || [ "$(stat -c %U:%a /var/lib/footfall 2>/dev/null)" != footfall:700 ]; then
  run install -d -o footfall -g footfall -m 0700 /var/lib/footfall
fi

say "Footfall in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  run python3 -m venv "$VENV"
fi
installed="$("$VENV/bin/pip" show footfall 2>/dev/null | sed -n 's/^Version: //p' || true)"
wanted="$(sed -n 's/^version = "\(.*\)"/\1/p' "$SOURCE/pyproject.toml")"
if [ "$installed" != "$wanted" ]; then
  run "$VENV/bin/pip" install -q "$SOURCE"
fi

say "settings"
if [ ! -f "$ROOT/etc/footfall/footfall.toml" ]; then
  put /etc/footfall/footfall.toml 640 footfall < <(render "$SOURCE/deploy/footfall.toml.in")
fi

say "guest gate (nftables) and NAT"
# Before the venv exists (a dry run, an image build), a footfall already on PATH can render it.
[ -x "$FOOTFALL" ] || FOOTFALL="$(command -v footfall || echo "$FOOTFALL")"
if [ -x "$FOOTFALL" ]; then
  put /etc/footfall/gateway.nft 644 < <(FOOTFALL_GUEST_INTERFACE="$GUEST_IF" FOOTFALL_UPLINK_INTERFACE="$UPLINK_IF" "$FOOTFALL" gateway-rules)
else
  echo "+ write /etc/footfall/gateway.nft (from: $FOOTFALL gateway-rules, once installed)"
  CHANGES=$((CHANGES + 1))
fi
put /etc/footfall/nat.nft 644 < <(render "$SOURCE/deploy/nat.nft.in")
put /etc/sysctl.d/60-footfall.conf 644 < <(printf 'net.ipv4.ip_forward = 1\n')
if [ "$(sysctl -n net.ipv4.ip_forward 2>/dev/null || echo 0)" != 1 ]; then
  run sysctl -q -w net.ipv4.ip_forward=1
fi

say "guest interface address"
put /etc/systemd/system/footfall-guest-address.service 644 <<EOF
[Unit]
Description=Footfall guest interface address
Before=dnsmasq.service hostapd.service footfall-portal.service
After=sys-subsystem-net-devices-${GUEST_IF}.device

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link set ${GUEST_IF} up
ExecStart=/usr/sbin/ip addr replace ${GUEST_IP}/24 dev ${GUEST_IF}

[Install]
WantedBy=multi-user.target
EOF
if [ -d "$ROOT/etc/NetworkManager/conf.d" ] || [ -d /etc/NetworkManager/conf.d ]; then
  put /etc/NetworkManager/conf.d/footfall.conf 644 < <(printf '[keyfile]\nunmanaged-devices=interface-name:%s\n' "$GUEST_IF")
fi

say "DHCP and DNS (dnsmasq, RFC 8910 option 114)"
put /etc/dnsmasq.d/footfall.conf 644 < <(render "$SOURCE/deploy/dnsmasq-footfall.conf.in")

if [ "$HOSTAPD" = 1 ]; then
  say "open guest SSID (hostapd)"
  put /etc/hostapd/footfall.conf 644 < <(render "$SOURCE/deploy/hostapd-footfall.conf.in")
  put /etc/default/hostapd 644 < <(printf 'DAEMON_CONF="/etc/hostapd/footfall.conf"\n')
fi

say "systemd units"
UNITS=(footfall-gateway.service footfall-portal.service)
for process in collector scheduler; do
  # A process is enabled once this version of Footfall has its command.
  if [ -x "$FOOTFALL" ] && "$FOOTFALL" "$process" --help >/dev/null 2>&1; then
    UNITS+=("footfall-$process.service")
  fi
done
for unit in "${UNITS[@]}"; do
  put "/etc/systemd/system/$unit" 644 < <(sed "s|/opt/footfall/venv|$VENV|g" "$SOURCE/systemd/$unit")
done
BEFORE_UNITS_ENABLED=$CHANGES
services=(footfall-guest-address.service "${UNITS[@]}" dnsmasq.service)
[ "$HOSTAPD" = 1 ] && services+=(hostapd.service)
if [ "$BEFORE_UNITS_ENABLED" -gt 0 ]; then
  run systemctl daemon-reload
fi
for unit in "${services[@]}"; do
  if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    run systemctl enable "$unit"
  fi
done
if [ "$CHANGES" -gt 0 ]; then
  run systemctl restart "${services[@]}"
fi

say "first panel owner"
if [ ! -f "$ROOT/var/lib/footfall/.owner-created" ]; then
  if [ "$PRINT_ONLY" = 1 ]; then
    echo "+ footfall manager add owner --role owner (a random password, printed once)"
    CHANGES=$((CHANGES + 1))
  else
    password="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)"
    if printf '%s\n' "$password" | runuser -u footfall -- env FOOTFALL_CONFIG=/etc/footfall/footfall.toml \
        "$FOOTFALL" manager add owner --role owner --password-stdin; then
      echo "panel owner: user 'owner', password '$password' (shown once: sign in, enrol two-factor, change it)"
    fi
    touch /var/lib/footfall/.owner-created
  fi
fi

say "done: $CHANGES change(s)$([ "$DRY_RUN" = 1 ] && echo ' would be made'), $FILES_WRITTEN file(s) written"
echo "Visitors are sent to $PORTAL_URL/ ; settings in /etc/footfall/footfall.toml."
