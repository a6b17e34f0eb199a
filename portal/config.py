"""Settings, declared once: name, default, help. Read from a TOML file, then FOOTFALL_* variables."""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from portal.core.deadlines import parse_holidays, zone
from portal.core.purposes import LANGUAGES
from portal.safeurl import safe_continue
from portal.weak_secrets import WeakSecret, check_faskey

ENV_PREFIX = "FOOTFALL_"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "/var/lib/footfall", "Directory for the SQLite file, the key file and backups (created 0700)."),
    Setting("database", "", "SQLite file path; empty means `<data_dir>/footfall.db`."),
    Setting("key_file", "", "Key file (AES-GCM, blind index, cookie secret), created 0600; empty means `<data_dir>/keys.json`."),
    Setting("store_id", "store-1", "This store's identifier, recorded with every consent and sent to the central store."),
    Setting("store_name", "Footfall WiFi", "Store name shown to visitors."),
    Setting("brand_color", "#0b6e4f", "The store's colour on the visitor pages (#rrggbb)."),
    Setting("dsr_deadline_days", 15, "Calendar days to complete a data-subject request (Law 91/2025 and Decree 356/2025: 15; the GDPR allows a month). Acknowledging is due within 2 working days."),
    Setting("dsr_processor_days", 20, "Calendar days to complete a data-subject request when a processor is involved (Law 91/2025: 20)."),
    Setting("dsr_extension_days", 15, "Calendar days the one extension of a data-subject request adds to its deadline."),
    Setting("public_holidays", "", "Public holidays (ISO dates, comma-separated) that are not working days for the privacy desk's clocks; Saturdays and Sundays never are."),
    Setting("dpo_contact", "", "The data protection contact (a person or department, with an email or phone): shown in the privacy notice and the compliance pack; empty means `privacy_contact`."),
    Setting("export_log_retention_days", 1095, "Days an entry of the export log (who was sent to which platform, as hashes, under which consent) is kept: 3 years, the limitation period of a claim for damages in Vietnam (Civil Code 2015, art. 588), longer than an audience lives on Meta (2 years unused) or Google Customer Match (540 days at most), so removal lists stay possible; the daily purge deletes older entries."),
    Setting("portal_url", "http://192.168.4.1:8080", "Address visitors' browsers reach the portal at; probes are redirected here."),
    Setting("portal_hosts", "", "Extra host names (comma-separated, with port if any) served as the portal itself."),
    Setting("listen_host", "0.0.0.0", "Address the portal's web server binds to."),
    Setting("listen_port", 8080, "Port the portal's web server binds to."),
    Setting("threads", 8, "Worker threads of the portal's web server."),
    Setting("disk_floor_mb", 100, "Free space (MB) the scheduler keeps on the data disk: it prunes its backups first and skips a backup that would cross it."),
    Setting("db_lock_wait_ms", 5000, "How long a write waits for the database's write lock before the visitor is asked to try again (503)."),
    Setting("trusted_proxy", "", "Address of the TLS front (nginx, see deploy/install.sh --tls-cert) whose X-Forwarded-For and X-Forwarded-Proto the portal believes; empty believes no one."),
    Setting("gateway", "null", "Gateway driver: `null` (records only; demo and tests), `nftables` (this machine is the gateway) or `opennds` (Footfall is the FAS of an openNDS router)."),
    Setting("guest_interface", "wlan0", "Interface facing the guests (nftables driver)."),
    Setting("uplink_interface", "", "Interface towards the internet (nftables driver); its subnets are refused to guests. Empty means the interfaces of the default routes."),
    Setting("guest_blocked_networks", "", "More networks (CIDRs, comma-separated) guests may never reach, beside the private and reserved ranges and the uplink's subnets (nftables driver)."),
    Setting("guest_allowed_services", "", "Store-LAN services guests may reach despite isolation (nftables driver): `address:port` pairs, comma-separated, IPv6 as `[address]:port`; TCP and UDP."),
    Setting("opennds_faskey", "", "The openNDS router's `faskey` (opennds driver): letters and digits, up to 32."),
    Setting("opennds_gateways", "", "openNDS gateway addresses (`ip:port`, comma-separated) this portal serves; empty means any private address."),
    Setting("opennds_secure_level", 2, "The router's `fas_secure_enabled`: 2 (encrypted query; php-cli and php openssl on the router), 3 (the same over HTTPS, and openNDS's authmon polls the portal) or 1 (unencrypted: any guest can claim another device; logged as a warning)."),
    Setting("opennds_authmon_networks", "", "Level 3: addresses (CIDRs, comma-separated) openNDS's authmon polls the portal from; no other address may read or acknowledge the list of clients to let out."),
    Setting("session_seconds", 14400, "How long a visitor stays online after signing in (seconds)."),
    Setting("default_region", "VN", "Region for phone numbers written without a country code (ISO 3166 code)."),
    Setting("default_language", "vi", "Language when the browser states no preference we support (`vi` or `en`)."),
    Setting("privacy_contact", "privacy@example.com", "Contact for data-protection requests, shown in the privacy notice."),
    Setting("controller_name", "", "Legal name of the data controller shown in the privacy notice; empty means the store name."),
    Setting("retention_days", 365, "Days a lead and its visits are kept after the last visit."),
    Setting("anonymous_retention_days", 30, "Days the visits of devices counted under a pseudonym (no consent to visit analytics) are kept."),
    Setting("pseudonym_rotation_hours", 24, "The collector names a device without consent to visit analytics by a keyed pseudonym whose key is destroyed after this many hours (local time; 24 keeps devices per day exact)."),
    Setting("min_age", 16, "Visitors must confirm they are at least this old to agree to any optional purpose (marketing, visit analytics, chain sharing); getting online needs no confirmation. 0 turns the confirmation off."),
    Setting("just_connect", False, "Offer a \"just connect\" button on the sign-in page: online on the WiFi terms alone, with no email, phone or name."),
    Setting("splash_headline_vi", "", "The sign-in page's headline in Vietnamese (up to 80 characters); empty means “WiFi miễn phí”. Editable in the panel."),
    Setting("splash_headline_en", "", "The sign-in page's headline in English (up to 80 characters); empty means “Free WiFi”."),
    Setting("splash_subtitle_vi", "", "The line under the headline in Vietnamese (up to 160 characters); empty means the standard invitation to leave a phone or an email."),
    Setting("splash_subtitle_en", "", "The line under the headline in English (up to 160 characters)."),
    Setting("splash_offer_vi", "", "An offer shown on the sign-in page in Vietnamese (up to 120 characters), such as “Giảm 10% cho ly thứ hai”; empty shows none."),
    Setting("splash_offer_en", "", "The offer in English (up to 120 characters); empty shows none."),
    Setting("splash_contact_first", "phone", "Which field the sign-in page shows first: `phone` (with SMS and Zalo, what most Vietnamese guests use) or `email`."),
    Setting("splash_link", "", "The store's own page (menu, offer, social page) offered as a button once a visitor is online: an http(s) address; empty offers “Continue browsing” or “Close”."),
    Setting("splash_link_label_vi", "", "That button's label in Vietnamese (up to 40 characters); empty means “Xem trang của cửa hàng”."),
    Setting("splash_link_label_en", "", "That button's label in English (up to 40 characters); empty means “See our page”."),
    Setting("marketing_max_per_month", 4, "The most marketing messages a person gets a month on each channel, as the consent texts promise them."),
    Setting("store_time_zone", "", "The store's time zone (an IANA name such as `Asia/Ho_Chi_Minh`) for quiet hours, the day after a visit, the privacy desk's working days and deadlines, the breach form and the times pages show, whatever the machine's own zone; empty means the system's."),
    Setting("public_url", "", "Address the links in messages (unsubscribe) point to, reachable from anywhere (the TLS front); empty means `portal_url`."),
    Setting("activation_quiet_start", 21, "Quiet hours start (hour, store time): no automated or campaign message is sent from then..."),
    Setting("activation_quiet_end", 8, "...until this hour (store time); equal to the start: no quiet hours."),
    Setting("activation_max_per_week", 2, "The most automated and campaign messages a person gets in 7 days on each channel."),
    Setting("activation_holdout_percent", 10, "Share (percent) of each automation's and campaign's audience kept as a holdout group that is not sent, to measure the lift."),
    Setting("activation_rate_per_second", 5, "The most messages the scheduler hands to each provider (email, SMS, Zalo) per second."),
    Setting("rate_limit_count", 10, "Form submissions allowed per device and per IP within the window."),
    Setting("rate_limit_window", 600, "Rate-limit window in seconds."),
    Setting("max_body_bytes", 16384, "Largest request body the portal accepts."),
    Setting("max_header_bytes", 8192, "Largest request head (request line and headers) the portal's server accepts."),
    Setting("visit_gap_minutes", 15, "A visit ends after this long without a sighting of the device."),
    Setting("min_dwell_minutes", 5, "Shorter runs of sightings are passers-by, not visits."),
    Setting("panel_networks", "127.0.0.0/8,::1/128", "Networks (CIDRs, comma-separated) the manager panel answers; never include the guest network."),
    Setting("panel_require_2fa", True, "Every manager must enrol TOTP two-factor before using the panel."),
    Setting("panel_idle_minutes", 30, "A panel session ends after this long without a request."),
    Setting("login_max_failures", 5, "Wrong passwords or codes in a row before an account is locked."),
    Setting("login_lockout_minutes", 15, "How long a locked account stays locked."),
    Setting("capture_interface", "", "Interface the collector listens on; empty means `guest_interface`."),
    Setting("probe_interface", "", "A monitor-mode interface for 802.11 probe requests (passers-by); empty turns it off."),
    Setting("capture_mdns", True, "Count mDNS announcements as presence too."),
    Setting("flush_seconds", 5, "The collector writes to the database in one transaction this often."),
    Setting("arp_probe_seconds", 0, "ARP-probe every leased address this often so quiet phones count as present; 0 turns it off."),
    Setting("dhcp_leases_file", "/var/lib/misc/dnsmasq.leases", "dnsmasq's lease file (for ARP probes)."),
    Setting("oui_file", "/usr/share/ieee-data/oui.csv", "IEEE OUI registry (Debian package ieee-data) for vendor names."),
    Setting("ignore_macs", "", "MAC addresses the collector never counts (comma-separated); the capture interface's own is always ignored."),
    Setting("email_driver", "none", "How emails (verification codes) are sent: `none`, `console` (printed: the demo) or `smtp`."),
    Setting("smtp_host", "", "SMTP server for `email_driver = smtp`."),
    Setting("smtp_port", 587, "SMTP port (587 STARTTLS, 465 implicit TLS)."),
    Setting("smtp_security", "starttls", "`starttls`, `ssl` (implicit TLS) or `none` (a relay on this machine only)."),
    Setting("smtp_user", "", "SMTP login; empty sends without one."),
    Setting("smtp_password", "", "SMTP password (keep the settings file 0600)."),
    Setting("smtp_from", "", "Sender address of the store's emails."),
    Setting("smtp_ca_file", "", "A CA file to verify the SMTP server with; empty uses the system's."),
    Setting("sms_driver", "none", "How SMS are sent: `none`, `console` or `esms` (eSMS.vn brandname SMS)."),
    Setting("esms_url", "", "eSMS.vn API endpoint; empty means its documented one."),
    Setting("esms_api_key", "", "eSMS.vn ApiKey."),
    Setting("esms_secret_key", "", "eSMS.vn SecretKey."),
    Setting("esms_brandname", "", "The registered brandname shown as the SMS sender."),
    Setting("zalo_driver", "none", "How Zalo messages are sent: `none`, `console` or `zns` (Zalo Notification Service)."),
    Setting("zalo_url", "", "Zalo ZNS endpoint; empty means business.openapi.zalo.me's."),
    Setting("zalo_access_token", "", "The Zalo Official Account's access token."),
    Setting("zalo_template_id", "", "The approved ZNS template for verification codes (its parameter: `otp`)."),
    Setting("weekly_summary", "off", "A summary of the week (visitors, new and returning, sign-ups, consents, exports) emailed every Monday morning to the owners who gave their account an email: `off`, or the language to write it in, `vi` or `en`. The owner turns it on in the panel's settings."),
    Setting("verify_when", "after", "When a visitor proves their email or phone with a one-time code: `after` getting online (at once; the record stays an unverified claim until the code is entered) or `before` (an SMS code arrives without internet; for an email or Zalo code the device gets `preverify_seconds` online to fetch it)."),
    Setting("preverify_seconds", 180, "With `verify_when = before`: how long a device waiting for an email or Zalo code is online to receive it."),
    Setting("sms_regions", "", "Regions (ISO 3166 codes, comma-separated) whose mobile numbers may get SMS and Zalo codes; empty means `default_region`. Premium and foreign numbers never do."),
    Setting("paid_codes_per_hour", 60, "The most SMS and Zalo codes the whole store sends in an hour (each is billed; a cap on SMS pumping)."),
    Setting("paid_codes_per_day", 300, "The most SMS and Zalo codes the whole store sends in a day."),
    Setting("central_url", "", "The chain's central store (https://...); empty keeps this appliance on its own."),
    Setting("sync_ca_file", "", "A CA file to pin the central store's TLS certificate to; empty uses the system's."),
    Setting("sync_allow_http", False, "Allow an http:// central_url on a loopback address (tests only: batches carry personal data)."),
    Setting("sync_interval_seconds", 30, "The scheduler pushes the outbox this often."),
    Setting("sync_batch_events", 5000, "Events per signed batch."),
    Setting("webhook_interval_seconds", 15, "The scheduler queues and sends webhooks this often."),
    Setting("webhook_timeout_seconds", 10, "A webhook receiver must answer within this many seconds (each connect and read)."),
    Setting("webhook_max_attempts", 10, "Attempts of one webhook message (exponential backoff from a minute, at most 6 hours apart) before it goes to the dead-letter list."),
    Setting("webhook_allow_loopback", False, "Allow webhook URLs on a loopback address, http:// included (tests only: webhooks carry personal data, and private, link-local and loopback targets are otherwise refused)."),
    Setting("central_dsn", "postgresql://postgres@127.0.0.1:5432/footfall", "Central store: the PostgreSQL database."),
    Setting("central_schema", "", "Central store: a PostgreSQL schema of its own (several chains in one database, tests)."),
    Setting("central_listen_host", "127.0.0.1", "Central store: address its web server binds to."),
    Setting("central_listen_port", 8090, "Central store: port its web server binds to."),
    Setting("central_workers", 3, "Central store: web server worker processes."),
    Setting("central_key_file", "", "Central store: its key file; empty means `<data_dir>/central-keys.json`."),
    Setting("central_max_batch_bytes", 8 * 1024 * 1024, "Central store: largest signed batch accepted (compressed)."),
    Setting("central_transfers_assessed", "", "Central store: the ad platforms (meta, google) its exports may go to, each with the date of its transfer impact assessment, e.g. `meta:2026-11-01,google:2026-11-02`; an export to a platform not named is refused (409), as the panel refuses one without a recorded assessment."),
    Setting("central_retention_days", 365, "Central store: days a person's details and devices are kept after they were last seen at any store, and days every visit is kept (visits go by calendar month, once the whole month is older: a month more at most) (`footfall central purge`); the consent log stays as proof."),
    Setting("sync_replay_window", 300, "Central store: signed batches older or newer than this many seconds are refused."),
    Setting("log_level", "INFO", "Logging level (DEBUG, INFO, WARNING, ERROR)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}
# The sign-in page's texts (per language), as the panel's editor bounds them too (store_settings.py).
SPLASH_TEXT_MAX = {"headline": 80, "subtitle": 160, "offer": 120, "link_label": 40}
# Control characters, and the bidirectional overrides that would make a line read backwards.
SPLASH_FORBIDDEN = "[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]"


class ConfigError(ValueError):
    """A setting has a value we cannot use."""


Settings = dataclasses.make_dataclass(
    "Settings", [(s.name, s.kind, dataclasses.field(default=s.default)) for s in SETTINGS], frozen=True
)


def _coerce(setting: Setting, value: Any) -> Any:
    kind = setting.kind
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
        elif kind is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif kind is str:
            return text
    raise ConfigError(f"setting {setting.name}: expected {kind.__name__}, got {value!r}")


def load_settings(
    path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> "Settings":
    """Defaults, then the TOML file (path or FOOTFALL_CONFIG), then FOOTFALL_* variables, then overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        for key, value in data.items():
            if key not in _BY_NAME:
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(_BY_NAME[key], value)
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.name] = _coerce(setting, environ[setting.env])
    for key, value in overrides.items():
        if key not in _BY_NAME:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(_BY_NAME[key], value)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: "Settings") -> None:
    if settings.default_language not in LANGUAGES:
        raise ConfigError(f"default_language must be one of {', '.join(LANGUAGES)}")
    if settings.gateway not in ("null", "nftables", "opennds"):
        raise ConfigError(f"unknown gateway driver {settings.gateway!r}")
    try:
        check_faskey(settings.opennds_faskey)
    except WeakSecret as exc:
        raise ConfigError(str(exc)) from None
    if settings.gateway == "opennds":
        _validate_opennds(settings)
    for name in ("session_seconds", "rate_limit_count", "rate_limit_window", "max_body_bytes",
                 "max_header_bytes", "threads", "db_lock_wait_ms", "disk_floor_mb", "retention_days", "anonymous_retention_days", "pseudonym_rotation_hours", "flush_seconds", "visit_gap_minutes", "panel_idle_minutes",
                 "login_max_failures", "login_lockout_minutes", "sync_interval_seconds",
                 "sync_batch_events", "central_workers", "central_max_batch_bytes", "sync_replay_window", "central_retention_days",
                 "export_log_retention_days"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    _validate_isolation(settings)
    for cidr in settings.panel_networks.split(","):
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"panel_networks: {cidr.strip()!r} is not a network") from None
    _refuse_guest_panel(settings)
    if settings.trusted_proxy:
        # One exact address: waitress compares it with the peer's; "*" would let any guest forge
        # its address (and reach the panel) with an X-Forwarded-For header.
        try:
            ipaddress.ip_address(settings.trusted_proxy)
        except ValueError:
            raise ConfigError(f"trusted_proxy: {settings.trusted_proxy!r} is not an IP address") from None
    try:
        transfers_assessed(settings)
    except ValueError as exc:
        raise ConfigError(f"central_transfers_assessed: {exc}") from None
    for channel, drivers in (("email", ("none", "console", "smtp")), ("sms", ("none", "console", "esms")),
                             ("zalo", ("none", "console", "zns"))):
        if getattr(settings, f"{channel}_driver") not in drivers:
            raise ConfigError(f"{channel}_driver must be one of {', '.join(drivers)}")
    for name, longest in SPLASH_TEXT_MAX.items():
        for language in LANGUAGES:
            value = getattr(settings, f"splash_{name}_{language}")
            if len(value) > longest or re.search(SPLASH_FORBIDDEN, value):
                raise ConfigError(f"splash_{name}_{language}: one line of at most {longest} characters")
    if settings.splash_contact_first not in ("phone", "email"):
        raise ConfigError("splash_contact_first must be `phone` or `email`")
    if settings.splash_link and safe_continue(settings.splash_link) is None:
        raise ConfigError(f"splash_link: {settings.splash_link!r} is not an http(s) address")
    if not 0 <= settings.min_age <= 25:
        raise ConfigError("min_age must be between 0 (no confirmation) and 25")
    if settings.marketing_max_per_month <= 0:
        raise ConfigError("marketing_max_per_month must be positive (the consent texts state it)")
    _validate_activation(settings)
    if settings.weekly_summary not in ("off", "vi", "en"):
        raise ConfigError("weekly_summary must be off, vi or en")
    if settings.verify_when not in ("after", "before"):
        raise ConfigError("verify_when must be after or before")
    if settings.paid_codes_per_hour < 0 or settings.paid_codes_per_day < settings.paid_codes_per_hour:
        raise ConfigError("paid_codes_per_hour must be >= 0 and paid_codes_per_day at least as large")
    if not 30 <= settings.preverify_seconds <= 900:
        raise ConfigError("preverify_seconds must be between 30 and 900")
    if settings.smtp_security not in ("starttls", "ssl", "none"):
        raise ConfigError("smtp_security must be starttls, ssl or none")
    if not 1 <= settings.dsr_deadline_days <= settings.dsr_processor_days or not 1 <= settings.dsr_extension_days:
        raise ConfigError("dsr_deadline_days and dsr_extension_days must be positive, dsr_processor_days at least dsr_deadline_days")
    try:
        parse_holidays(settings.public_holidays)
    except ValueError as exc:
        raise ConfigError(f"public_holidays: {exc}") from None
    try:
        zone(settings.store_time_zone)
    except ValueError as exc:
        raise ConfigError(f"store_time_zone: {exc}") from None
    if not 30 <= settings.export_log_retention_days <= 3650:
        raise ConfigError("export_log_retention_days must be between 30 and 3650")
    if not settings.portal_url.startswith(("http://", "https://")):
        raise ConfigError("portal_url must start with http:// or https://")


def _validate_activation(settings: "Settings") -> None:
    if not (0 <= settings.activation_quiet_start <= 23 and 0 <= settings.activation_quiet_end <= 23):
        raise ConfigError("activation_quiet_start and activation_quiet_end are hours, 0 to 23")
    if settings.activation_max_per_week <= 0 or settings.activation_rate_per_second <= 0:
        raise ConfigError("activation_max_per_week and activation_rate_per_second must be positive")
    if not 0 <= settings.activation_holdout_percent <= 50:
        raise ConfigError("activation_holdout_percent must be between 0 and 50")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError("public_url must start with http:// or https://")


def _refuse_guest_panel(settings: "Settings") -> None:
    """The address guests reach the portal at is on the guest network: panel_networks holding it
    (10.0.0.0/8 or 192.168.0.0/16 "for the store LAN") would open the panel to every guest.
    Loopback is the demo's, and a name (behind the TLS front) says nothing here (install.sh checks)."""
    from urllib.parse import urlsplit

    try:
        guest_side = ipaddress.ip_address((urlsplit(settings.portal_url).hostname or "").strip("[]"))
    except ValueError:
        return
    if guest_side.is_loopback:
        return
    for cidr in settings.panel_networks.split(","):
        if cidr.strip() and guest_side in ipaddress.ip_network(cidr.strip(), strict=False):
            raise ConfigError(f"panel_networks: {cidr.strip()} holds {guest_side}, the portal's address on the "
                              "guest network: every guest would reach the panel")


def backups_dir(settings: "Settings") -> Path:
    return Path(settings.data_dir) / "backups"


def _validate_opennds(settings: "Settings") -> None:
    if not settings.opennds_faskey:
        raise ConfigError("the opennds gateway needs opennds_faskey (the router's faskey)")
    if settings.opennds_secure_level not in (1, 2, 3):
        raise ConfigError("opennds_secure_level must be 1, 2 or 3 (the router's fas_secure_enabled)")
    if settings.opennds_secure_level >= 2 and not re.fullmatch(r"[A-Za-z0-9]{1,32}", settings.opennds_faskey):
        raise ConfigError("opennds_faskey must be letters and digits, at most 32 (openNDS hands it to php as the AES key)")
    networks = [n.strip() for n in settings.opennds_authmon_networks.split(",") if n.strip()]
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"opennds_authmon_networks: {cidr!r} is not a network") from None
    if settings.opennds_secure_level == 3 and not networks:
        raise ConfigError("opennds_secure_level 3 needs opennds_authmon_networks: the address(es) the router polls from")


def _validate_isolation(settings: "Settings") -> None:
    from portal.gateway.isolation import IFACE_RE, parse_networks, parse_services

    if settings.uplink_interface and not IFACE_RE.match(settings.uplink_interface):
        raise ConfigError(f"uplink_interface: {settings.uplink_interface!r} is not an interface name")
    for name, parse in (("guest_blocked_networks", parse_networks), ("guest_allowed_services", parse_services)):
        try:
            parse(getattr(settings, name))
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None


def database_path(settings: "Settings") -> Path:
    return Path(settings.database) if settings.database else Path(settings.data_dir) / "footfall.db"


_TRANSFER = re.compile(r"(meta|google):(\d{4}-\d{2}-\d{2})\Z")


def transfers_assessed(settings: "Settings") -> dict[str, datetime.date]:
    """`central_transfers_assessed` read: each ad platform the central store may export to, and the
    date of its transfer impact assessment (never in the future). ValueError says what is wrong."""
    out = {}
    for item in filter(None, (part.strip() for part in settings.central_transfers_assessed.split(","))):
        match = _TRANSFER.match(item)
        if match is None:
            raise ValueError(f"{item!r} is not platform:YYYY-MM-DD (platform meta or google)")
        day = datetime.date.fromisoformat(match.group(2))
        if day > datetime.date.today():
            raise ValueError(f"{item!r}: the assessment is dated in the future")
        out[match.group(1)] = day
    return out


def central_key_path(settings: "Settings") -> Path:
    return Path(settings.central_key_file) if settings.central_key_file else Path(settings.data_dir) / "central-keys.json"


def key_path(settings: "Settings") -> Path:
    return Path(settings.key_file) if settings.key_file else Path(settings.data_dir) / "keys.json"


def markdown_table() -> str:
    """The README's settings table, generated so that it cannot drift from the code."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        rows.append(f"| `{s.name}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows)
