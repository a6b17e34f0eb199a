#!/usr/bin/env bash
# Install Footfall on a Raspberry Pi OS Bookworm / Debian 12 machine that becomes the gateway of
# a guest WiFi: packages, a venv, a system user, the guest gate (nftables), DHCP/DNS (dnsmasq,
# option 114), an open SSID (hostapd, optionally with an OWE twin), forwarding and NAT, the
# systemd units, and with a certificate the HTTPS front (nginx) of the portal.
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
  --privacy-contact C  who visitors write to about their data (an email or phone), named in the
                       privacy notice; required on a first install, never an example address
  --admin-net CIDR     the network store staff reach the manager panel from (default: this machine only)
  --no-hostapd         the guest interface is wired or another access point serves the SSID
  --owe                OWE (Enhanced Open) transition mode: a hidden encrypted twin of the open
                       SSID that OWE-capable phones join instead; both bridged into br-footfall
  --portal-port N      the portal's port, where guests' port 80 is redirected (default 8080)
  --tls-cert FILE      certificate (PEM, full chain) for --portal-host: turns on HTTPS sign-in,
                       nginx in front of the portal
  --tls-key FILE       its private key (PEM)
  --portal-host NAME   the portal's DNS name, as in the certificate (dnsmasq answers it for guests)
  --https-port N       the HTTPS port (default 443)
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
PRIVACY_CONTACT=""
HOSTAPD=1
ADMIN_NET=""
OWE=0
PORTAL_PORT=8080
HTTPS_PORT=443
TLS_CERT=""
TLS_KEY=""
PORTAL_HOST=""
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
    --privacy-contact) PRIVACY_CONTACT="$2"; shift ;;
    --no-hostapd) HOSTAPD=0 ;;
    --owe) OWE=1 ;;
    --portal-port) PORTAL_PORT="$2"; shift ;;
    --https-port) HTTPS_PORT="$2"; shift ;;
    --tls-cert) TLS_CERT="$2"; shift ;;
    --tls-key) TLS_KEY="$2"; shift ;;
    --portal-host) PORTAL_HOST="$2"; shift ;;
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
# The guest LAN (the guest address's /24) inside the admin network would open the panel to every guest.
guest_net="${GUEST_IP%.*}.0/24"
if [ -n "$ADMIN_NET" ] && ! python3 -c 'import ipaddress, sys
sys.exit(ipaddress.ip_network(sys.argv[1], strict=False).overlaps(ipaddress.ip_network(sys.argv[2])))' "$ADMIN_NET" "$guest_net"; then
  die "--admin-net $ADMIN_NET overlaps the guest LAN $guest_net: every guest would reach the panel"
fi
PANEL_NETWORKS="127.0.0.0/8,::1/128${ADMIN_NET:+,$ADMIN_NET}"
valid_port() { [[ "$1" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$1" -le 65535 ]; }
valid_port "$PORTAL_PORT" || die "invalid --portal-port: $PORTAL_PORT"
valid_port "$HTTPS_PORT" || die "invalid --https-port: $HTTPS_PORT"
[ "$PORTAL_PORT" != "$HTTPS_PORT" ] || die "--portal-port and --https-port must differ"
[ "$OWE" = 0 ] || [ "$HOSTAPD" = 1 ] || die "--owe needs hostapd (drop --no-hostapd)"
# With OWE two BSSes (two interfaces) carry guests: a bridge is the guest LAN that dnsmasq, the
# gate and the collector see. Without it the radio interface is the guest LAN.
RADIO_IF="$GUEST_IF"
OWE_IF="${GUEST_IF}-owe"
if [ "$OWE" = 1 ]; then
  valid_if "$OWE_IF" || die "--owe: the interface name $GUEST_IF is too long for its twin $OWE_IF (15 characters at most)"
  GUEST_IF=br-footfall
  # The twin's SSID is hidden (phones learn it from the open SSID's beacon): derived, stable, short.
  OWE_SSID="owe-$(printf '%s' "$SSID" | sha256sum | cut -c1-12)"
fi

NET_PREFIX="${GUEST_IP%.*}"
TLS=0
if [ -n "$TLS_CERT$TLS_KEY$PORTAL_HOST" ]; then
  if [ -z "$TLS_CERT" ] || [ -z "$TLS_KEY" ] || [ -z "$PORTAL_HOST" ]; then
    die "HTTPS needs all three of --tls-cert, --tls-key and --portal-host"
  fi
  TLS=1
  PORTAL_HOST="${PORTAL_HOST,,}"
  if ! [[ "$PORTAL_HOST" =~ ^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ ]] \
      || [ ${#PORTAL_HOST} -gt 253 ]; then
    die "invalid --portal-host (a DNS name such as wifi.example.com): $PORTAL_HOST"
  fi
  for f in "$TLS_CERT" "$TLS_KEY"; do
    if ! [ -f "$f" ] || ! [ -r "$f" ]; then die "cannot read $f"; fi
  done
  TLS_CERT="$(realpath "$TLS_CERT")"
  TLS_KEY="$(realpath "$TLS_KEY")"
  # The paths go into nginx's configuration: nothing that could end or extend a directive.
  for f in "$TLS_CERT" "$TLS_KEY"; do
    [[ "$f" =~ ^/[A-Za-z0-9._/@+-]+$ ]] || die "use a certificate/key path of letters, digits and ._/@+- only: $f"
  done
  case "$(stat -L -c %a "$TLS_KEY")" in
    *0) ;;
    *) echo "warning: $TLS_KEY is readable by every user of this machine (chmod 600 it)" >&2 ;;
  esac
  if command -v openssl >/dev/null; then
    openssl x509 -noout -in "$TLS_CERT" 2>/dev/null || die "$TLS_CERT is not a PEM certificate"
    # -passin: a key with a passphrase (nginx could not read it either) fails here, never prompts.
    [ "$(openssl x509 -noout -pubkey -in "$TLS_CERT")" = "$(openssl pkey -pubout -passin pass: -in "$TLS_KEY" 2>/dev/null)" ] \
      || die "$TLS_KEY is not the private key of $TLS_CERT (or it has a passphrase)"
    openssl x509 -noout -checkend 0 -in "$TLS_CERT" >/dev/null || die "$TLS_CERT has expired"
    openssl x509 -noout -checkhost "$PORTAL_HOST" -in "$TLS_CERT" | grep -q "does match" \
      || die "$TLS_CERT is not valid for $PORTAL_HOST"
  fi
fi
if [ "$TLS" = 1 ]; then
  PORTAL_URL="https://${PORTAL_HOST}$([ "$HTTPS_PORT" = 443 ] || echo ":$HTTPS_PORT")"
  # The portal hides behind nginx, on loopback, and believes only nginx's forwarded headers.
  LISTEN_HOST=127.0.0.1
  TRUSTED_PROXY=127.0.0.1
  HOST_RECORD="host-record=${PORTAL_HOST},${GUEST_IP}"
else
  PORTAL_URL="http://${GUEST_IP}:${PORTAL_PORT}"
  LISTEN_HOST="$GUEST_IP"
  TRUSTED_PROXY=""
  HOST_RECORD="# (no portal host name: HTTPS is off)"
fi
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

# The privacy notice tells visitors to write here (the portal refuses to start with an example).
if [ -n "$PRIVACY_CONTACT" ]; then
  [[ "$PRIVACY_CONTACT" =~ ^[^[:cntrl:]\"\\{}\<\>|\&]{3,200}$ ]] || die "the privacy contact must be 3 to 200 printable characters, none of \" \\ { } < > | &"
  shopt -s nocasematch
  if [[ "$PRIVACY_CONTACT" =~ (example\.(com|net|org)|\.(example|test|invalid|localhost)([^a-z0-9-]|$)|your[-_.]?(store|shop|company|domain)|changeme) ]]; then
    die "--privacy-contact $PRIVACY_CONTACT is an example address: give the store's real contact"
  fi
  shopt -u nocasematch
elif [ ! -f "$ROOT/etc/footfall/footfall.toml" ]; then
  die "--privacy-contact is required on a first install: the privacy notice tells visitors to write there"
fi
# sed_text VALUE: VALUE safe as sed replacement text (an SSID may hold & | or \).
sed_text() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

# render TEMPLATE: the template with every @NAME@ filled in.
render() {
  local ssid store contact
  ssid="$(sed_text "$SSID")"
  store="$(sed_text "$STORE_NAME")"
  contact="$(sed_text "$PRIVACY_CONTACT")"
  sed -e "s|@GUEST_IF@|${GUEST_IF}|g" -e "s|@UPLINK_IF@|${UPLINK_IF}|g" -e "s|@GUEST_IP@|${GUEST_IP}|g" \
      -e "s|@DHCP_FIRST@|${NET_PREFIX}.50|g" -e "s|@DHCP_LAST@|${NET_PREFIX}.250|g" \
      -e "s|@PORTAL_URL@|${PORTAL_URL}|g" -e "s|@SSID@|${ssid}|g" -e "s|@COUNTRY@|${COUNTRY}|g" \
      -e "s|@STORE_NAME@|${store}|g" -e "s|@PRIVACY_CONTACT@|${contact}|g" -e "s|@PANEL_NETWORKS@|${PANEL_NETWORKS}|g" \
      -e "s|@RADIO_IF@|${RADIO_IF}|g" -e "s|@OWE_IF@|${OWE_IF}|g" -e "s|@OWE_SSID@|${OWE_SSID:-}|g" \
      -e "s|@BRIDGE@|${GUEST_IF}|g" -e "s|@PORTAL_PORT@|${PORTAL_PORT}|g" -e "s|@HTTPS_PORT@|${HTTPS_PORT}|g" \
      -e "s|@PORTAL_HOST@|${PORTAL_HOST}|g" -e "s|@TLS_CERT@|${TLS_CERT}|g" -e "s|@TLS_KEY@|${TLS_KEY}|g" \
      -e "s|@LISTEN_HOST@|${LISTEN_HOST}|g" -e "s|@TRUSTED_PROXY@|${TRUSTED_PROXY}|g" \
      -e "s|@HOST_RECORD@|${HOST_RECORD}|g" "$1"
}

# with_network_keys < TOML: the settings file with the keys this script derives from its options
# set to this run's values (added when missing); every other line, the owner's edits, kept.
with_network_keys() {
  local text key value pairs
  text="$(cat)"
  pairs=("guest_interface=\"$GUEST_IF\"" "listen_host=\"$LISTEN_HOST\"" "listen_port=$PORTAL_PORT"
         "portal_url=\"$PORTAL_URL\"" "trusted_proxy=\"$TRUSTED_PROXY\"")
  [ -z "$PRIVACY_CONTACT" ] || pairs+=("privacy_contact=\"$PRIVACY_CONTACT\"")
  for pair in "${pairs[@]}"; do
    key="${pair%%=*}"
    value="${pair#*=}"
    if grep -qE "^${key}[[:space:]]*=" <<<"$text"; then
      text="$(sed -E "s|^${key}[[:space:]]*=.*|${key} = ${value}|" <<<"$text")"
    else
      text+=$'\n'"${key} = ${value}"
    fi
  done
  printf '%s\n' "$text"
}

# drop PATH: remove a file an earlier run wrote and this one does not want.
drop() {
  [ -e "$ROOT$1" ] || return 0
  CHANGES=$((CHANGES + 1))
  if [ "$DRY_RUN" = 1 ]; then
    echo "+ rm $ROOT$1"
  else
    rm -f "$ROOT$1"
    echo "removed $ROOT$1"
  fi
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
[ "$TLS" = 1 ] && PACKAGES+=(nginx)
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
if [ -f "$ROOT/etc/footfall/footfall.toml" ]; then
  put /etc/footfall/footfall.toml 640 footfall < <(with_network_keys < "$ROOT/etc/footfall/footfall.toml")
else
  put /etc/footfall/footfall.toml 640 footfall < <(render "$SOURCE/deploy/footfall.toml.in" | with_network_keys)
fi

say "guest gate (nftables) and NAT"
# Before the venv exists (a dry run, an image build), a footfall already on PATH can render it.
[ -x "$FOOTFALL" ] || FOOTFALL="$(command -v footfall || echo "$FOOTFALL")"
if [ -x "$FOOTFALL" ]; then
  put /etc/footfall/gateway.nft 644 < <(FOOTFALL_GUEST_INTERFACE="$GUEST_IF" FOOTFALL_UPLINK_INTERFACE="$UPLINK_IF" \
                                        FOOTFALL_LISTEN_PORT="$PORTAL_PORT" "$FOOTFALL" gateway-rules)
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
# With OWE the guest LAN is a bridge made here; hostapd adds both BSSes to it.
BRIDGE_ADD=""
[ "$OWE" = 1 ] && BRIDGE_ADD="ExecStartPre=-/usr/sbin/ip link add ${GUEST_IF} type bridge"$'\n'
put /etc/systemd/system/footfall-guest-address.service 644 <<EOF
[Unit]
Description=Footfall guest interface address
Before=dnsmasq.service hostapd.service nginx.service footfall-portal.service
After=sys-subsystem-net-devices-${RADIO_IF}.device

[Service]
Type=oneshot
RemainAfterExit=yes
${BRIDGE_ADD}ExecStart=/usr/sbin/ip link set ${GUEST_IF} up
ExecStart=/usr/sbin/ip addr replace ${GUEST_IP}/24 dev ${GUEST_IF}

[Install]
WantedBy=multi-user.target
EOF
if [ -d "$ROOT/etc/NetworkManager/conf.d" ] || [ -d /etc/NetworkManager/conf.d ]; then
  UNMANAGED="interface-name:${GUEST_IF}"
  [ "$OWE" = 1 ] && UNMANAGED+=";interface-name:${RADIO_IF};interface-name:${OWE_IF}"
  put /etc/NetworkManager/conf.d/footfall.conf 644 < <(printf '[keyfile]\nunmanaged-devices=%s\n' "$UNMANAGED")
fi

say "DHCP and DNS (dnsmasq, RFC 8910 option 114)"
put /etc/dnsmasq.d/footfall.conf 644 < <(render "$SOURCE/deploy/dnsmasq-footfall.conf.in")

if [ "$HOSTAPD" = 1 ]; then
  say "open guest SSID (hostapd)"
  if [ "$OWE" = 1 ]; then
    put /etc/hostapd/footfall.conf 644 < <(render "$SOURCE/deploy/hostapd-footfall.conf.in"
                                          render "$SOURCE/deploy/hostapd-footfall-owe.conf.in")
    # ap_isolate keeps guests apart inside each BSS; between the two BSSes the bridge forwards,
    # unless both ports are isolated (they then reach only the gateway).
    put /etc/systemd/system/hostapd.service.d/footfall.conf 644 < <(printf '[Service]\nExecStartPost=/usr/sbin/bridge link set dev %s isolated on\nExecStartPost=/usr/sbin/bridge link set dev %s isolated on\n' "$RADIO_IF" "$OWE_IF")
  else
    put /etc/hostapd/footfall.conf 644 < <(render "$SOURCE/deploy/hostapd-footfall.conf.in")
    drop /etc/systemd/system/hostapd.service.d/footfall.conf
  fi
  put /etc/default/hostapd 644 < <(printf 'DAEMON_CONF="/etc/hostapd/footfall.conf"\n')
fi

if [ "$TLS" = 1 ]; then
  say "HTTPS front (nginx) for $PORTAL_URL"
  put /etc/nginx/conf.d/footfall.conf 644 < <(render "$SOURCE/deploy/nginx-footfall.conf.in")
  # nginx listens on the guest address, which exists once footfall-guest-address has run.
  put /etc/systemd/system/nginx.service.d/footfall.conf 644 < <(printf '[Unit]\nWants=footfall-guest-address.service\nAfter=footfall-guest-address.service\n')
else
  drop /etc/nginx/conf.d/footfall.conf
  drop /etc/systemd/system/nginx.service.d/footfall.conf
fi

say "systemd units"
UNITS=(footfall-gateway.service footfall-portal.service)
for process in collector scheduler; do
  # A process is enabled once this version of Footfall has its command.
  if [ -x "$FOOTFALL" ] && "$FOOTFALL" "$process" --help >/dev/null 2>&1; then
    UNITS+=("footfall-$process.service")
  fi
done
# The chain's central store runs here too (its settings are in /etc/footfall/central.toml): its
# retention purge runs daily from a timer.
if [ -f "$ROOT/etc/footfall/central.toml" ]; then
  UNITS+=(footfall-central-purge.service footfall-central-purge.timer)
fi
for unit in "${UNITS[@]}"; do
  put "/etc/systemd/system/$unit" 644 < <(sed "s|/opt/footfall/venv|$VENV|g" "$SOURCE/systemd/$unit")
done
BEFORE_UNITS_ENABLED=$CHANGES
services=(footfall-guest-address.service)
for unit in "${UNITS[@]}"; do
  # A oneshot started by its timer is enabled through the timer, and never restarted here.
  [ "$unit" = footfall-central-purge.service ] || services+=("$unit")
done
services+=(dnsmasq.service)
[ "$HOSTAPD" = 1 ] && services+=(hostapd.service)
[ "$TLS" = 1 ] && services+=(nginx.service)
if [ "$BEFORE_UNITS_ENABLED" -gt 0 ]; then
  run systemctl daemon-reload
fi
for unit in "${services[@]}"; do
  if ! systemctl is-enabled --quiet "$unit" 2>/dev/null; then
    run systemctl enable "$unit"
  fi
done
if [ "$CHANGES" -gt 0 ]; then
  if [ "$TLS" = 1 ]; then
    # nginx binds the guest address (so does its test): bring it up first. A configuration
    # nginx refuses stops here, before the other services restart.
    run systemctl restart footfall-guest-address.service
    run nginx -t -q
  fi
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
