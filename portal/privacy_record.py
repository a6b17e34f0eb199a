"""The record of processing a store owner keeps (Law 91/2025, Decree 356/2025; GDPR art. 30),
rendered from the settings and the policy texts the portal shows, so it says what the code does.

`footfall privacy-record` prints it; docs/privacy.md is its output with default settings, and
tests/test_docs.py fails when the two differ. Every claim here is one the code backs; what the
code does not do is said as plainly.
"""
from __future__ import annotations

import hashlib

from portal.config import Settings
from portal.core.purposes import LANGUAGES, OPTIONAL_PURPOSES, REQUIRED_PURPOSE
from portal.messages.zns import DEFAULT_URL as ZNS_URL
from portal.policy_texts import NOTICE
from portal.privacy_record_sources import Endpoint, Texts, default_texts

PURPOSE_ROWS = {
    REQUIRED_PURPOSE: ("WiFi access", "Let the device online for `session_seconds` after the visitor accepts the "
                       "terms; keep the proof of that acceptance.", "Required to get online."),
    "marketing_email": ("Offers by email", "Automated and campaign emails (see Messages), and CSV exports of a "
                        "segment with the verified email of people who agreed, for the store's own mailing tool.",
                        "Optional, unticked by default."),
    "marketing_sms": ("Offers by SMS or Zalo", "Automated and campaign SMS and Zalo messages (see Messages), and "
                      "CSV exports of a segment with the verified phone number of people who agreed.",
                      "Optional, unticked by default."),
    "ad_audiences": ("Ad audiences (Meta, Google)", "Meta Custom Audience and Google Customer Match files: the "
                     "normalized verified email and phone, SHA-256 hashed, of people who agreed; only after a "
                     "transfer assessment for that platform.", "Optional, unticked by default."),
    "visit_analytics": ("Visit analytics", "The person's visits followed from day to day: their devices stored by "
                        "MAC with host name and DHCP fingerprint, their visits kept per person and synced, segments "
                        "(new, returning, loyal, lapsed, lost, the owner's own), visit-triggered messages, the "
                        "dashboard's per-person figures. Without it the person's devices are counted like anyone's, "
                        "under a pseudonym. A withdrawal unlinks the visits kept at once (one random pseudonym per "
                        "device and day, out of every segment) and tells the central store to drop its copy.", "Optional, unticked by default."),
    "chain_sharing": ("Chain sharing", "The central store merges the person's records of several stores into one "
                      "(by a verified email or phone) only when the store says the latest event for it is a grant; "
                      "otherwise each store's record stays apart, and a withdrawal separates it again.",
                      "Optional, unticked by default."),
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _host(url: str) -> str:
    from urllib.parse import urlsplit
    return urlsplit(url).hostname or url


def _providers(settings: Settings) -> list[str]:
    """The message providers in use, from the drivers' settings."""
    from portal.messages.esms import DEFAULT_URL as ESMS_URL

    found = []
    if settings.email_driver == "smtp":
        found.append(f"emails through the SMTP server `{settings.smtp_host or '(smtp_host not set)'}` "
                     f"(`email_driver = smtp`, {settings.smtp_security})")
    if settings.sms_driver == "esms":
        found.append(f"SMS through eSMS.vn at `{_host(settings.esms_url or ESMS_URL)}` (`sms_driver = esms`, "
                     f"brandname `{settings.esms_brandname or '(not set)'}`)")
    if settings.zalo_driver == "zns":
        found.append(f"Zalo messages through Zalo ZNS at `{_host(settings.zalo_url or ZNS_URL)}` (`zalo_driver = zns`; "
                     "VNG Corporation, Vietnam)")
    return found


def _retention_hours(hours: int) -> str:
    return "a local day" if hours == 24 else f"{hours} hours of local time"


def render(settings: Settings, texts: Texts | None = None, endpoints: list[Endpoint] | None = None) -> str:
    """The record as markdown; `texts` are the published versions (else the defaults); `endpoints`
    the webhook endpoints the owner added (None: not known here, e.g. docs/privacy.md)."""
    source = "published in this appliance's database" if texts else "the defaults a new portal publishes"
    texts = {**default_texts(settings), **(texts or {})}
    controller = settings.controller_name or settings.store_name
    central = settings.central_url
    air = settings.probe_interface
    rotation = _retention_hours(settings.pseudonym_rotation_hours)
    providers = _providers(settings)
    live = [e for e in (endpoints or []) if e.enabled]
    out = [
        "# Record of processing",
        "",
        "<!-- Generated by `footfall privacy-record`; do not edit (tests/test_docs.py checks it). -->",
        "",
        f"Controller: **{controller}** (store `{settings.store_id}`). Data-protection contact: "
        f"{settings.dpo_contact or settings.privacy_contact}. Prepared for Vietnam's Law 91/2025/QH15 on personal "
        "data protection and Decree 356/2025/ND-CP (which replaced Decree 13/2023 on 1 January 2026), and for GDPR "
        "art. 30 where it applies. It describes what this Footfall appliance does with the settings in force; the "
        "owner adds what happens outside it (the tools exports are loaded into, the CRM behind a webhook).",
        "",
        "## Processing without consent, and its basis",
        "",
        "Everything else this record says of visitors runs only on a consent the person gave and has not withdrawn.",
        "",
        "| processing | whose data | basis |",
        "|---|---|---|",
        "| Getting a device online: its MAC address and IP for the gateway's authorization "
        f"(`session_seconds` = {settings.session_seconds}), the acceptance of the WiFi terms with the exact text "
        "(`wifi_terms`), the contact given and its one-time code | visitors who sign in"
        + (" or press \"just connect\"" if settings.just_connect else "")
        + " | contract: the WiFi terms are the service the visitor asks for; nothing optional is a condition of it |",
        "| Counting the guest network's devices: visits, dwell and passers-by under a pseudonym whose key is "
        f"destroyed after {rotation} (`pseudonym_rotation_hours`), kept {settings.anonymous_retention_days} days "
        "(`anonymous_retention_days`), counted only in the dashboard's totals; likewise the visits made of their "
        "sign-ins, each under a random pseudonym of its own"
        + (f"; probe requests heard over the air on `{air}`, counted as one aggregate a day" if air else "")
        + " | every device on the guest network without a current `visit_analytics` consent | no consent is "
        "asked: no identifier of the device outlives the key; GDPR art. 6(1)(f) (the owner's interest in "
        "counting footfall, with the balancing test the owner keeps); under Law 91/2025 the owner states the basis "
        "in the privacy notice, or does not run the collector |",
        *([f"| Sync to the chain's central store (`{_host(central)}`): each signed-in person's record (proved "
           "contacts, name, language) and consent log | visitors who sign in | the WiFi terms (contract) and the "
           "proof of consent; the central serves, merges or exports a person only with a consent that counts |"]
          if central else []),
        *(["| Webhooks: an opaque id (`p_...`) and the event (`lead.created`, `lead.verified`, `consent.changed`, "
        "`lead.erased`) to the endpoints the owner added; contact details only with the matching consent | "
        "visitors who sign in | pseudonymous; the owner's interest in keeping their CRM in step (GDPR art. "
        "6(1)(f)), stated in the notice |"] if endpoints is None or live else []),
        "| The consent log, the export log and removal lists, the privacy desk's register, the audit log | people "
        "who consented, were exported or asked; staff | legal obligation: proof of consent, of acting on a "
        "withdrawal or a request, and of who saw personal data |",
        "| Redeemed vouchers with the receipt amount | the till | the store's own accounting (the voucher was sent "
        "on a marketing consent) |",
        "",
        "## What is collected",
        "",
        "| data | from whom | where it is kept |",
        "|---|---|---|",
        "| Email address and/or phone number (normalized; phones to E.164, default region "
        f"`{settings.default_region}`), name if given, language, when each contact was proved | visitors who sign "
        "in | `lead`: AES-256-GCM ciphertexts and keyed HMAC-SHA256 blind indexes |",
        "| A contact named on the form that another record holds, and the one-time codes (a keyed hash only) "
        "| visitors who sign in | `contact_claim` (encrypted), `verification_code`; a day |",
        "| Device of a person who agreed to `visit_analytics` (no restriction upheld): MAC, last IP, vendor (OUI), "
        "private-address bit, DHCP fingerprint (option 55), vendor class (option 60), host name | followed "
        "people's devices | `device`, in clear |",
        "| Device of a signed-in person without that consent: MAC, last IP, first and last sign-in, private-address "
        "bit (the gateway's authorization needs the MAC); no host name or DHCP fingerprint (cleared when a consent "
        "ends); its presence is counted under a pseudonym like any other device's | visitors who sign in"
        + (" or just connect" if settings.just_connect else "") + " | `device` |",
        "| Any other device: a pseudonym `anon-` + HMAC-SHA256(key of the period, MAC), first and last seen, the "
        "private-address bit; never its MAC, host name or DHCP fingerprint | every device on the guest network "
        "| `device` (`anonymous`) |",
        "| Visits: start and end of each run of presence, passers-by (shorter than `min_dwell_minutes`) kept "
        "apart, whether the collector or a sign-in made it | every device seen | `visit`, `open_run` |",
        "| Sign-in sessions in progress: device, sign-in time, the last sign of life the gateway reports; a visit "
        "once silent for `visit_gap_minutes` (the row then goes), on the person's device if they agreed to visit "
        "analytics, else under a new random `anon-` name of its own, no MAC | visitors who sign in | `signin_run`, "
        "then `visit` |",
        "| Consent events: purpose, granted or withdrawn, time, the exact text shown and its SHA-256, store, "
        "device MAC, IP address, method | visitors who sign in, withdraw, unsubscribe or are erased | `consent`, "
        "append-only |",
        "| Proofs of control of a contact: kind, channel, masked destination, store, device, time | visitors "
        "who enter a code | `contact_proof`, append-only |",
        "| Authorizations: device, IP address, start, expiry | visitors who sign in"
        + (" or just connect" if settings.just_connect else "") + " | `authorization` |",
        "| Messages: automation or campaign, person, channel, state, holdout flag, unsubscribe time; every "
        "attempt with the recipient masked | people messaged | `activation_send`, `send_attempt` |",
        "| Vouchers: code, expiry, when and by whom redeemed, the receipt amount in đồng (optional) | people "
        "messaged; the till | `voucher` |",
        "| Audience exports: who, segment, platform, time, count; per person the policy SHA-256 of each consent "
        "it rested on and only the SHA-256 of each identifier sent | people exported | `export_log`, "
        "`export_member` |",
        "| Data-subject requests: kind, requester (encrypted), dates, status, how the requester was verified "
        "| people who ask | `data_request` |",
        "| Audit log: which manager did what (logins, views of personal data, exports, erasures, redemptions), "
        "from which IP address | the store's staff | `audit_entry` |",
        "| Staff accounts: user name, argon2id password hash, TOTP secret (encrypted), sessions with IP address "
        "| the store's staff | `manager`, `manager_session` |",
        "| Breaches: detection time, description and measures (encrypted), kinds of data, number of people, "
        "the report to the authority | the owner | `breach` |",
        "| Webhook endpoints (address, secret encrypted) and the messages waiting for them (identifiers only) "
        "| the owner | `webhook_endpoint`, `webhook_delivery` |",
        "",
        "## Presence: anonymous by default",
        "",
        "Presence comes from the guest network: ARP, DHCP client messages"
        + (" and mDNS announcements" if settings.capture_mdns else "")
        + (f", and ARP probes of leased addresses every {settings.arp_probe_seconds} s"
           if settings.arp_probe_seconds else "") + ". "
        "The collector stores a device under its MAC only when it is linked to a person whose latest word on "
        "`visit_analytics` is a grant that counts, with no objection or restriction upheld and not erased "
        "(`FOLLOWED_PEOPLE_SQL`, one rule for the collector, the dashboard and segments). Every other device is "
        f"stored as `anon-` + HMAC-SHA256(key, MAC) under a key that lasts {rotation} "
        f"(`pseudonym_rotation_hours` = {settings.pseudonym_rotation_hours}); when the period ends the key is "
        "zeroed in memory and overwritten in its file (`pseudonym.key`, beside the database, never in it nor in "
        "its backups), so the pseudonym can no longer be linked to the MAC, nor to the same device's pseudonym "
        "of another period. The raw MAC, host name and DHCP fingerprint of such a device are held in memory "
        "only, never in Footfall's files; SQLite's `secure_delete` zeroes deleted rows. When a person withdraws "
        "`visit_analytics` or a restriction is upheld, the host name and DHCP data of their devices are cleared. "
        "A pseudonymous device's visits count only in the dashboard's totals (visitors, visits, dwell, per day; "
        "estimates, since phones change private addresses); they are never synced, sent to a webhook, or put "
        "in a segment.",
        "",
        (f"802.11 probe requests are captured on `{air}` (`probe_interface`), aggregate only: every run heard "
         "over the air on a local day is counted under that day's one name (`anon-air-<date>`), whoever sent "
         "it; no MAC or pseudonym of a passer-by is stored, and such runs are never saved in progress."
         if air else
         "Over-the-air probe capture is off (`probe_interface` is empty): devices that never join the guest "
         "network are not seen at all."),
        "",
        "Visits from sign-ins (the `signin_visits` job, every 5 minutes): where no collector sees a signed-in "
        "device, its sign-in session becomes a visit, from the sign-in to the last sign of life the gateway reports "
        "(openNDS's ndsctl, the nftables neighbour table, the device's own captive probes), once silent for "
        f"{settings.visit_gap_minutes} minutes "
        "(`visit_gap_minutes`). A followed person's is on their device and synced like a collector visit; anyone "
        "else's is under a new random pseudonym, one per visit, with no MAC, counted only in totals. A collector "
        "visit of the same time replaces it: nothing is counted twice.",
        "",
        "## Purposes and legal basis",
        "",
        "| purpose | what is done | legal basis | choice |",
        "|---|---|---|---|",
    ]
    for purpose, (name, what, choice) in PURPOSE_ROWS.items():
        basis = "contract (the WiFi terms), the acceptance recorded with the exact text" if purpose == REQUIRED_PURPOSE \
            else "consent, recorded with the exact text"
        out.append(f"| {name} (`{purpose}`) | {what} | {basis} | {choice} |")
    out += [
        "",
        "Every optional box (each marketing channel, visit analytics, chain sharing) is separate, unticked, and "
        "never a condition of getting online"
        + (f"; ticking any needs the box \"I am {settings.min_age} or older\" (`min_age`), without which "
           "nothing is recorded" if settings.min_age else "; no age is asked (`min_age` is 0)")
        + ". "
        + ("A \"just connect\" button (`just_connect`) gets a device online on the WiFi terms alone: no "
           "contact, no person recorded, only the device (MAC, IP) and its authorization, and an audit line with "
           "the terms' SHA-256. " if settings.just_connect else
           "There is no \"just connect\" button (`just_connect` is off): getting online takes an email or a phone. ")
        + "Marketing texts state the form of the messages and at most "
        f"{settings.marketing_max_per_month} a month per channel (`marketing_max_per_month`). "
        "Double opt-in: a marketing consent is recorded at once but counts (exports, segments, messages, the "
        "dashboard, sync, webhooks) only for a contact the person proved with a one-time code "
        "(`marketing_email` a verified email, `marketing_sms` and Zalo a verified phone). A consent counts while "
        "no later version of its text in its language, nor of the privacy notice after it was given, is marked "
        "material (`consent.VALID_SQL`); editorial changes keep it. Withdrawal (the portal's \"My data\" page, a "
        "message's unsubscribe link, the panel) takes effect at once for messages and at "
        "the next export, sync and webhook.",
        "",
        "## Messages (activation)",
        "",
        "Automations (first visit, Nth visit, lapsed, review request) and one-off campaigns are planned and sent "
        "by the scheduler only, to people whose contact is proved and whose latest event for the channel's purpose "
        "is a grant that counts; triggers that follow visits also need `visit_analytics`. Not to erased, folded "
        "or restricted people. Each row is checked again just before it is sent. Quiet hours "
        f"{settings.activation_quiet_start:02d}:00 to {settings.activation_quiet_end:02d}:00 store time "
        "(`activation_quiet_start`, `activation_quiet_end`); at most "
        f"{settings.activation_max_per_week} a week per channel (`activation_max_per_week`) and "
        f"{settings.marketing_max_per_month} a month per consent (SMS and Zalo share `marketing_sms`). "
        f"{settings.activation_holdout_percent}% of each audience (`activation_holdout_percent`) is a holdout "
        "group that is not sent, to measure the lift. Every message carries a one-click unsubscribe link (emails "
        "also `List-Unsubscribe`, RFC 8058): using it is a withdrawal of that consent, recorded in the consent log "
        "(method `unsubscribe_link`). The send log keeps each attempt with the recipient masked.",
        "",
        "Vouchers: a message may carry a single-use code. When it is redeemed at the till, the staff member, the "
        "time and, if typed, the receipt amount (whole đồng) are recorded: a monetary figure per person. It is "
        "recorded to measure what a campaign brought (redeemed and spend per automation) and, for people who "
        "agreed to `visit_analytics`, their recency, visits and spend (RFM). A redemption goes to the central store, "
        "if any, and to webhooks subscribed to `voucher.redeemed` (code, amount, currency, the person's opaque id).",
        "",
        "## Retention",
        "",
        f"- Visits: deleted {settings.retention_days} days (`retention_days`) after they end, by the daily purge "
        "at 03:30.",
        f"- A person not seen for {settings.retention_days} days: erased by the same purge (contact details, "
        "devices, visits, authorizations, segment membership, messages).",
        f"- Pseudonymous devices: their visits {settings.anonymous_retention_days} days "
        "(`anonymous_retention_days`) after they end; the pseudonym then goes with its last visit. The key "
        f"naming them: {rotation}.",
        "- Consent events: kept as proof after erasure, without device MAC or IP address. Proofs of control of a "
        "contact (masked destination): kept, append-only.",
        "- Contact claims and one-time codes: a day.",
        f"- Send log and messages: {settings.retention_days} days (`retention_days`); an erased person's at the next "
        "activation run. Unused vouchers go with the person; a redeemed voucher stays as the till's record, "
        "unlinked from an erased person.",
        f"- Export log (who was sent to which platform, as SHA-256 hashes, under which consent): deleted "
        f"{settings.export_log_retention_days} days (`export_log_retention_days`) after the export, by the daily "
        "purge; 3 years by default, the limitation period of a claim for damages (Civil Code 2015, art. 588), "
        "longer than an audience lives on Meta or Google, so that removal lists stay possible. An identifier's "
        "hash is cleared sooner, once its removal from the platform is marked done.",
        "- Sign-in sessions in progress: until they become a visit (silent for `visit_gap_minutes`).",
        "- Outbox events: deleted 7 days after the central store confirmed them (and the webhooks read them); "
        "delivered webhook messages after 7 days.",
        "- Devices of signed-in people without `visit_analytics`: the MAC row and its authorizations go with the "
        "person's erasure or retention purge.",
        "- \"Just connect\" devices (no person): the authorization, the device's last address and the IP of the "
        "acceptance's audit line are deleted within 10 minutes of the session's end (the `forget` job), the "
        "device row too unless a visit holds it."
        + ("" if settings.just_connect else " (`just_connect` is off: there are none.)"),
        "- A restore from a backup (by hand, or automatically for a damaged database) redoes the erasures and "
        "withdrawals made after that backup from the erasure ledger (`erasures.jsonl` beside the database: record "
        "ids only) before anything reads the restored file; the register of requests and the audit log of that "
        "period are not restored.",
        "- Backups: the last 7 daily copies of the whole database (`<data_dir>/backups`, mode 0600); "
        "an erasure reaches them only as they are replaced (7 days).",
        (f"- The central store: a person not seen at any store for {settings.central_retention_days} days "
         "(`central_retention_days`) loses their details, devices, visits and segment membership (`footfall "
         "central purge`, a daily systemd timer `deploy/install.sh` installs); the consent log stays. Every visit "
         f"there is deleted {settings.central_retention_days} days after it started, a month later at most: the "
         "purge drops each calendar month of visits once all of it is that old." if central else
         f"- The central store (none configured here) keeps people {settings.central_retention_days} days "
         "(`central_retention_days`) after they were last seen, and each visit as long (a month more at most)."),
        "- Audit log, data-subject requests, staff accounts: kept; no job deletes them.",
        "",
        "## Recipients",
        "",
        (f"- The chain's central store at `{_host(central)}`: every signed-in person's record with only the "
         "contacts they proved, name and language (decrypted for the transfer, over verified TLS, in batches "
         "signed with HMAC-SHA256) and their `chain_sharing` choice, consent events (a consent a material change "
         "lapsed, as lapsed), device links and visits of followed people only (no pseudonymous device's visit is ever sent, and the "
         "central ignores one if it comes), segment membership, erasures, voucher redemptions. Its read API "
         "serves a person only with a consent that counts, each field only for a purpose agreed to; merging "
         "across stores needs `chain_sharing`."
         if central else "- No central store (`central_url` is empty): nothing is synced."),
        ("- Message providers: " + "; ".join(providers) + ". They get the destination and the text: one-time "
         "codes, and marketing messages of the automations and campaigns above."
         if providers else "- No message provider is configured (`email_driver`, `sms_driver`, `zalo_driver`): "
         "codes and messages are not sent."),
    ]
    if endpoints is None:
        out.append("- The owner's CRM or other systems through signed webhooks (Standard Webhooks, https to public "
                   "addresses only): the endpoints are added in the panel and listed in the record it generates. "
                   "A person is an opaque id (`p_...`); the email only with a `marketing_email` consent that counts, "
                   "the phone only with `marketing_sms`, then name and language; a visit names its person only "
                   "with `visit_analytics`.")
    elif live:
        out.append("- Signed webhooks (Standard Webhooks) to: " + "; ".join(
            f"`{_host(e.url)}` ({', '.join(f'`{t}`' for t in e.types) or 'no event types'})" for e in live)
            + ". A person is an opaque id (`p_...`); the email only with a `marketing_email` consent that counts, "
            "the phone only with `marketing_sms`, then name and language; a visit names its person only with "
            "`visit_analytics`.")
    else:
        out.append("- No webhook endpoint is enabled: nothing is sent to a CRM.")
    out += [
        "- The store's staff through the panel: owners and managers see contact details (each view is "
        "audited); analysts see totals only.",
        "- Whoever the owner gives an export to: CSV (`marketing_email`, `marketing_sms`) and the Meta and "
        "Google audience files (`ad_audiences`) are downloaded by a manager, each logged (`export_log`); Footfall "
        "uploads nothing to any platform. The panel's removal lists say who must be taken off a platform after a "
        "withdrawal or an erasure.",
        "",
        "## Transfers abroad",
        "",
        "Only with the `ad_audiences` consent: the Meta Custom Audience and Google Customer Match files hold "
        "the SHA-256 hash of the normalized email and phone (as each platform documents). Meta Platforms, Inc. and "
        "Google LLC (United States) process them on their own servers, outside Vietnam; a hash of an email or "
        "phone is still personal data. Footfall refuses a Meta or Google export until the owner records a "
        "transfer impact assessment for that platform in the compliance pack. The upload is done by the owner, "
        "outside Footfall."
        + (" A webhook endpoint or the central store hosted abroad is a transfer too: record its assessment."
           if central or live else ""),
        "",
        "## Rights and the privacy desk",
        "",
        "The panel's privacy desk registers each request (access, correction, erasure, withdrawal, objection, "
        "restriction, provision), verifies the requester (a one-time code to the record's own contact, or a "
        "named check) before it is done, and keeps the law's clocks: acknowledged within 2 working days "
        "(Monday to Friday, less `public_holidays`, "
        + (f"on the calendar of `{settings.store_time_zone}`, `store_time_zone`), " if settings.store_time_zone else
           "on the machine's calendar: `store_time_zone` is empty), ")
        + "done within "
        f"{settings.dsr_deadline_days} days (`dsr_deadline_days`; Law 91/2025 and Decree 356/2025), "
        f"{settings.dsr_processor_days} when a processor is involved (`dsr_processor_days`), extended at most "
        f"once by {settings.dsr_extension_days} days (`dsr_extension_days`); the GDPR's month is longer. A breach "
        "is recorded with its 72-hour clock.",
        "",
        "- Access and provision: everything held about the person as JSON (details, devices, visits, consents "
        "with their texts, segments).",
        "- Correction of email, phone or name; erasure of the person, their devices, visits, authorizations, "
        "claims, segment membership and messages (the consent log stays as proof), sent to the central store; an "
        "erasure through the central store's API reaches every store that knew the person.",
        "- Withdrawal of any purpose, each on its own (the desk, \"My data\", an unsubscribe link); the central "
        "store's API has no withdrawal of its own.",
        "- Objection and restriction upheld: the person stays on file but out of segments, exports, messages, "
        "webhooks' contact details and the collector's following (their devices counted under pseudonyms) until "
        "the restriction is lifted. The restriction and its lifting are sent to the central store (`lead.restricted`), "
        "which then leaves the person out of its API, the chain's segments and exports; a store's restriction "
        "outlives the central's retention purge.",
        "- On \"My data\", a guest who proved a contact in this session (or whose record is all this device's "
        "own) objects to marketing and the profiling behind it: restricted at once, the request recorded done "
        "(GDPR art. 21(2)-(3); Law 91/2025); an objection on other grounds or a restriction request goes to the "
        "desk with the clocks above.",
        "- On the portal, \"My data\" shows, downloads and erases a record for a browser that proved a contact of "
        "it in the last 30 minutes; otherwise the device sees and erases only itself.",
        "",
        "## Security measures",
        "",
        "- Email, phone, name, the requester of a data request, breach descriptions and measures, webhook secrets "
        "and staff TOTP secrets: "
        "AES-256-GCM with a key file created with mode 0600 (`keys.json`), each ciphertext bound to its column; "
        "look-ups by keyed blind index. The data directory is created 0700.",
        "- Sync: HTTPS only (a CA can be pinned), each batch signed with the store's own key, a replay window, "
        "the central's answers signed and checked before anything in them is applied. Webhooks: https to public "
        "addresses only, signed.",
        "- Guests: signed-in devices reach the internet only, never the store's network or one another "
        "(nftables gateway); the manager panel answers only `panel_networks`.",
        "- Staff: argon2id passwords, TOTP two-factor "
        + ("required" if settings.panel_require_2fa else "**not required** (`panel_require_2fa` is off)")
        + f", lock-out after {settings.login_max_failures} failures, sessions held on the server ending after "
        f"{settings.panel_idle_minutes} idle minutes, roles (owner, manager, analyst), an audit log.",
        "- Durability: a lead and its consent are committed before the visitor is answered; a damaged database "
        "is replaced by the newest sound backup and the lost period reported.",
        "",
        "## Texts shown to visitors",
        "",
        "Each text is a template filled from the settings (store name, controller, contacts, retention, the "
        "organisations involved); a new name or contact publishes a new version of each text it appears in, "
        "marked editorial. When the owner changes a text they mark the change editorial or material: a consent "
        "counts (exports, segments, messages) while no later version of its text in its language, nor of the "
        "privacy notice after it was given, is marked material; otherwise the person is asked again on the "
        "portal. The notice cannot be published without each section the law lists (controller, data, "
        "purposes, method, organisations, possible consequences, start and end, transfers abroad, rights, data "
        "protection contact).",
        "",
        f"The consent statements in force ({source}) and the SHA-256 recorded with each consent event:",
        "",
    ]
    for document in (REQUIRED_PURPOSE, *OPTIONAL_PURPOSES, NOTICE):
        for language in LANGUAGES:
            text = texts[(document, language)]
            shown = "(the full notice, shown on the portal's privacy page)" if document == NOTICE \
                else " ".join(text.split())
            out.append(f"- `{document}` ({language}, sha256 `{_sha(text)[:16]}…`): {shown}")
    return "\n".join(out) + "\n"
