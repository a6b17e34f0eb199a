"""The texts visitors agree to and read, as templates, in both languages.

A text is a template with placeholders ({store}, {controller}, {contact}, {dpo}, {retention}...,
PLACEHOLDERS) rendered from the settings in force (`placeholders`): a PolicyVersion keeps both the
template and the rendered text, and the stored hash is the hash of exactly what was shown.
DEFAULTS become the first versions (portal/consent.ensure_policies), and replace a text still at
one of FORMER_DEFAULTS (never edited by the owner); the panel publishes later versions.

The privacy notice must carry every section the law lists (Law 91/2025 art. 13, Decree 356/2025;
GDPR art. 13): NOTICE_SECTIONS, checked by `missing_sections` before a notice is published.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from portal.core.purposes import MARKETING_PURPOSES, PURPOSES, REQUIRED_PURPOSE  # noqa: F401  (re-exported; defined in the core)

NOTICE = "privacy_notice"
DOCUMENTS = (*PURPOSES, NOTICE)

# Placeholder: what it is filled with (the panel lists them beside the texts).
PLACEHOLDERS = {
    "store": "store_name",
    "controller": "controller_name (empty: the store name)",
    "contact": "privacy_contact",
    "dpo": "dpo_contact (empty: privacy_contact)",
    "retention": "retention_days",
    "max_per_month": "marketing_max_per_month",
    "min_age": "min_age",
    "age_rule": "a sentence on min_age",
    "just_connect": "a sentence on just_connect (empty when off)",
    "organisations": "every organisation involved, by name (store, central operator, message providers, Meta, Google)",
    "transfers": "the transfers abroad",
    "privacy_url": "the address of this notice on the portal",
}
# Settings that only name or address someone: texts re-rendered after their change are editorial.
IDENTITY_SETTINGS = ("store_name", "controller_name", "privacy_contact", "dpo_contact", "portal_url")
_PLACEHOLDER = re.compile(r"\{([a-z_]{1,30})\}")


class TextError(ValueError):
    """A text that cannot be published: `code` says why, `detail` names what (a section, a placeholder)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code, self.detail = code, detail


def unknown_placeholders(template: str) -> list[str]:
    return sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(PLACEHOLDERS))


def used_placeholders(template: str) -> set[str]:
    return {m.group(1) for m in _PLACEHOLDER.finditer(template)} & set(PLACEHOLDERS)


def render(template: str, values: dict[str, str]) -> str:
    """Fill the known placeholders; anything else in braces stays as written (no str.format:
    an owner's "{store.__class__}" is text, not an attribute lookup)."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template).strip()


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def placeholders(settings, language: str) -> dict[str, str]:
    """What each placeholder says in `language`, from the settings in force."""
    vi = language == "vi"
    store = settings.store_name
    controller = settings.controller_name or store
    contact = settings.privacy_contact
    orgs = [f"{controller} ({'cửa hàng' if vi else 'the store'} {store})" if controller != store else store]
    if settings.central_url:
        orgs.append(f"{'văn phòng chính của' if vi else 'the head office of'} {controller} "
                    f"({'hệ thống trung tâm của chuỗi tại' if vi else 'the chain’s central system at'} {_host(settings.central_url)})")
    if settings.email_driver == "smtp" and settings.smtp_host:
        orgs.append(f"{'máy chủ email' if vi else 'the email server'} {settings.smtp_host} "
                    f"({'gửi email cho bạn' if vi else 'sends our emails'})")
    if settings.sms_driver == "esms":
        orgs.append("eSMS.vn (" + ("gửi tin nhắn SMS" if vi else "sends our SMS") + ")")
    if settings.zalo_driver == "zns":
        orgs.append("Zalo, VNG Corporation (" + ("gửi tin nhắn Zalo" if vi else "delivers our Zalo messages") + ")")
    orgs.append("Meta Platforms, Inc. (Facebook, Instagram) " + ("và" if vi else "and") + " Google LLC ("
                + ("chỉ với ô quảng cáo: mã băm một chiều của email hoặc số điện thoại" if vi else
                   "only with the ads box: a one-way hash of your email or phone") + ")")
    lead = "Các tổ chức tham gia xử lý dữ liệu của bạn: " if vi else "The organisations involved in processing your data: "
    if vi:
        transfers = ("Chỉ khi bạn đánh dấu ô quảng cáo: mã băm một chiều của email hoặc số điện thoại được gửi tới Meta "
                     "Platforms, Inc. và Google LLC, xử lý trên máy chủ của họ tại Hoa Kỳ và các nước khác. "
                     "Ngoài ra, dữ liệu của bạn không được chuyển ra nước ngoài.")
        age = (f"Để đánh dấu bất kỳ ô không bắt buộc nào, bạn cần xác nhận mình từ {settings.min_age} tuổi trở lên."
               if settings.min_age else "")
        just = (" Bạn cũng có thể chỉ kết nối mà không cung cấp email, số điện thoại hay tên: khi đó chỉ thiết bị của "
                "bạn được ghi nhận." if settings.just_connect else "")
    else:
        transfers = ("Only if you tick the ads box: a one-way hash of your email or phone goes to Meta Platforms, Inc. "
                     "and Google LLC, which process it on their servers in the United States and elsewhere. "
                     "Otherwise your data is not transferred abroad.")
        age = (f"To tick any optional box you confirm you are {settings.min_age} or older." if settings.min_age else "")
        just = (" You may also just connect without giving an email, phone or name: only your device is then "
                "recorded." if settings.just_connect else "")
    return {"store": store, "controller": controller, "contact": contact, "dpo": settings.dpo_contact or contact,
            "retention": str(settings.retention_days), "max_per_month": str(settings.marketing_max_per_month),
            "min_age": str(settings.min_age), "age_rule": age, "just_connect": just,
            "organisations": lead + "; ".join(orgs) + ".", "transfers": transfers,
            "privacy_url": settings.portal_url.rstrip("/") + "/privacy"}


# -- the notice's sections ----------------------------------------------------------------------
# Each section the law asks for, and its heading in each language: a notice must have a "## "
# heading line of each (in either language), whatever it says under it.
NOTICE_SECTIONS: dict[str, dict[str, str]] = {
    "controller": {"en": "Who we are", "vi": "Chúng tôi là ai"},
    "data": {"en": "What we collect", "vi": "Dữ liệu chúng tôi thu thập"},
    "purposes": {"en": "Why we use it", "vi": "Mục đích sử dụng"},
    "method": {"en": "How we process it", "vi": "Cách thức xử lý"},
    "organisations": {"en": "Who receives it", "vi": "Ai nhận dữ liệu"},
    "consequences": {"en": "Possible unwanted consequences", "vi": "Hậu quả, thiệt hại không mong muốn có thể xảy ra"},
    "period": {"en": "When processing starts and ends", "vi": "Thời gian bắt đầu và kết thúc xử lý"},
    "transfers": {"en": "Transfers abroad", "vi": "Chuyển dữ liệu ra nước ngoài"},
    "rights": {"en": "Your rights", "vi": "Quyền của bạn"},
    "dpo": {"en": "Data protection contact", "vi": "Liên hệ bảo vệ dữ liệu cá nhân"},
}


def _fold(heading: str) -> str:
    return " ".join(heading.split()).casefold().rstrip(":.")


def missing_sections(text: str, language: str) -> list[str]:
    """The required sections a notice lacks, each named by its heading in `language`."""
    headings = {_fold(line[3:]) for line in text.splitlines() if line.startswith("## ")}
    return [titles.get(language, titles["en"]) for titles in NOTICE_SECTIONS.values()
            if not any(_fold(title) in headings for title in titles.values())]


# -- example contacts ----------------------------------------------------------------------------
_EXAMPLE = re.compile(r"(?:@|\b)(?:[a-z0-9-]+\.)*(?:example\.(?:com|net|org)|[a-z0-9-]+\.(?:example|test|invalid|localhost))\b"
                      r"|\b(?:your|my)[-_.]?(?:store|shop|company|domain)\b|\bchangeme\b", re.IGNORECASE)
CONTACT_SETTINGS = ("privacy_contact", "dpo_contact")


def is_example_contact(value: str) -> bool:
    """An address of the documentation's (privacy@example.com, you@store.test...), not a real one."""
    return bool(_EXAMPLE.search(value or ""))


def example_contacts(settings) -> list[str]:
    """The contact settings that still hold an example address."""
    return [name for name in CONTACT_SETTINGS if is_example_contact(getattr(settings, name))]

DEFAULTS: dict[str, dict[str, str]] = {
    "wifi_terms": {
        "en": "I accept the terms of use of this free WiFi: I will use it lawfully, it comes "
              "without guarantee, and each session lasts a limited time. I have read the privacy notice.",
        "vi": "Tôi đồng ý với điều khoản sử dụng WiFi miễn phí này: tôi sử dụng đúng pháp luật, "
              "dịch vụ không kèm bảo đảm và mỗi phiên truy cập có thời hạn. Tôi đã đọc thông báo "
              "về quyền riêng tư.",
    },
    "marketing_email": {
        "en": "Send me offers and news from {store} by email: a newsletter of plain text and pictures, "
              "at most {max_per_month} emails a month. Optional; I can withdraw at any time on the “My data” "
              "page of this WiFi or by writing to {contact}.",
        "vi": "Gửi cho tôi ưu đãi và tin tức từ {store} qua email: bản tin gồm chữ và hình ảnh, tối đa "
              "{max_per_month} email mỗi tháng. Không bắt buộc; tôi có thể rút lại bất cứ lúc nào tại trang "
              "“Dữ liệu của tôi” trên WiFi này hoặc bằng cách viết thư tới {contact}.",
    },
    "marketing_sms": {
        "en": "Send me offers from {store} by SMS or Zalo: short text messages, at most {max_per_month} a "
              "month. Optional; I can withdraw at any time on the “My data” page of this WiFi or by "
              "writing to {contact}.",
        "vi": "Gửi cho tôi ưu đãi từ {store} qua SMS hoặc Zalo: tin nhắn văn bản ngắn, tối đa "
              "{max_per_month} tin mỗi tháng. Không bắt buộc; tôi có thể rút lại bất cứ lúc nào tại trang "
              "“Dữ liệu của tôi” trên WiFi này hoặc bằng cách viết thư tới {contact}.",
    },
    "ad_audiences": {
        "en": "Use my email or phone, as a one-way hash, to show me {store}'s ads on Facebook, "
              "Instagram and Google: ads among the other ads those services show me, no messages are "
              "sent to me; the list is updated at most once a week. Optional; I can withdraw at any time.",
        "vi": "Dùng email hoặc số điện thoại của tôi (dưới dạng mã băm một chiều) để hiển thị "
              "quảng cáo của {store} trên Facebook, Instagram và Google: quảng cáo xen giữa các quảng cáo "
              "khác của các dịch vụ đó, không có tin nhắn nào được gửi cho tôi; danh sách được cập nhật tối đa "
              "mỗi tuần một lần. Không bắt buộc; tôi có thể rút lại bất cứ lúc nào.",
    },
    "visit_analytics": {
        "en": "Follow my visits to {store} from day to day (when my devices come and how long they stay) "
              "to know me as a new, regular or lapsed customer and group me with similar customers for "
              "offers. Optional; without it my visits count only in anonymous totals. I can withdraw at any time.",
        "vi": "Theo dõi các lượt ghé thăm {store} của tôi qua từng ngày (thiết bị của tôi đến lúc nào và ở "
              "lại bao lâu) để biết tôi là khách mới, khách quen hay khách lâu không quay lại và xếp tôi vào "
              "nhóm khách hàng tương tự để nhận ưu đãi. Không bắt buộc; nếu không đồng ý, lượt ghé thăm của tôi chỉ "
              "được tính trong số liệu tổng hợp ẩn danh. Tôi có thể rút lại bất cứ lúc nào.",
    },
    "chain_sharing": {
        "en": "Let {controller}'s head office recognise me as one customer in all its stores: my records "
              "and visits from each store are merged into one. Optional; without it each store's record of "
              "me stays apart. I can withdraw at any time.",
        "vi": "Cho phép văn phòng chính của {controller} nhận biết tôi là một khách hàng tại mọi cửa hàng: "
              "hồ sơ và lượt ghé thăm của tôi tại từng cửa hàng được gộp làm một. Không bắt buộc; nếu không "
              "đồng ý, hồ sơ của tôi tại mỗi cửa hàng được giữ riêng. Tôi có thể rút lại bất cứ lúc nào.",
    },
    NOTICE: {
        "en": """## Who we are
{controller} runs this WiFi at {store} and decides how your data is used (the data controller). Contact: {contact}.

## What we collect
The email address or phone number you give, your name if you give it, your language, your device's network address (MAC), IP address and the details it announces on the network (maker, name), when your device is in the store (visits), and the record of what you agreed to.

## Why we use it
To give you WiFi access (the terms you accept).{just_connect} To count visits in totals (how many guests, how long they stay). Only if you tick the matching box, each separate and never needed to get online: to follow your visits from day to day (visit analytics), to recognise you in all of {controller}'s stores (chain sharing), to send you offers by email or by SMS or Zalo (text messages, at most {max_per_month} a month on each), or to show you our ads on Facebook, Instagram and Google. {age_rule}

## How we process it
Automatically, on the WiFi equipment in the store: your email, phone and name are encrypted; visits are worked out from your device's network traffic (never its content); marketing lists are made only of people who agreed and proved their email or phone with a code. No decision with legal effect on you is made automatically.

## Who receives it
{organisations} We never sell your data.

## Possible unwanted consequences
A record of when you are in our stores shows some of your habits; if it leaked, someone could learn when you come here. Offers you agreed to may come more often than you like (never more than stated above); ads may be shown to you on other services. We limit these risks by encryption, by keeping only what is needed, and by deleting it on time.

## When processing starts and ends
Processing starts when your device joins this WiFi (visit counting) and when you sign in (everything else). It ends when you withdraw your consent, ask us to erase your data, or {retention} days after your last visit, when everything is deleted. The record of your consent is kept as proof for as long as the law requires.

## Transfers abroad
{transfers}

## How we protect it
Your email, phone and name are encrypted on our equipment and sent only over encrypted connections. Only the store's authorised staff see them, and each view is logged.

## Your rights
You can see your data, correct it, withdraw any consent, object, restrict its use, and have everything erased, at any time: on the "My data" page of this WiFi or by writing to {contact}. Withdrawing consent does not affect your WiFi access. You may also complain to the data-protection authority (in Vietnam the Ministry of Public Security, department A05; in the EU the authority of your country).

## Data protection contact
{dpo}""",
        "vi": """## Chúng tôi là ai
{controller} vận hành mạng WiFi này tại {store} và quyết định cách sử dụng dữ liệu của bạn (bên kiểm soát dữ liệu). Liên hệ: {contact}.

## Dữ liệu chúng tôi thu thập
Email hoặc số điện thoại bạn cung cấp, tên của bạn nếu bạn cung cấp, ngôn ngữ của bạn, địa chỉ mạng (MAC), địa chỉ IP của thiết bị và các thông tin thiết bị tự công bố trên mạng (hãng sản xuất, tên thiết bị), thời điểm thiết bị của bạn có mặt tại cửa hàng (lượt ghé thăm), và bản ghi những gì bạn đã đồng ý.

## Mục đích sử dụng
Để cung cấp truy cập WiFi (theo điều khoản bạn đồng ý).{just_connect} Để đếm lượt ghé thăm dưới dạng số liệu tổng hợp (bao nhiêu khách, ở lại bao lâu). Chỉ khi bạn đánh dấu ô tương ứng, mỗi ô riêng biệt và không bao giờ là điều kiện để truy cập mạng: theo dõi các lượt ghé thăm của bạn qua từng ngày (phân tích lượt ghé thăm), nhận biết bạn tại mọi cửa hàng của {controller} (chia sẻ trong chuỗi), gửi ưu đãi qua email hoặc qua SMS hay Zalo (tin nhắn văn bản, tối đa {max_per_month} tin mỗi tháng trên mỗi kênh), hoặc hiển thị quảng cáo của chúng tôi trên Facebook, Instagram và Google. {age_rule}

## Cách thức xử lý
Tự động, trên thiết bị WiFi đặt tại cửa hàng: email, số điện thoại và tên của bạn được mã hóa; lượt ghé thăm được xác định từ lưu lượng mạng của thiết bị (không bao giờ đọc nội dung); danh sách tiếp thị chỉ gồm những người đã đồng ý và đã xác minh email hoặc số điện thoại bằng mã. Không có quyết định nào có hệ quả pháp lý đối với bạn được đưa ra một cách tự động.

## Ai nhận dữ liệu
{organisations} Chúng tôi không bao giờ bán dữ liệu của bạn.

## Hậu quả, thiệt hại không mong muốn có thể xảy ra
Bản ghi thời điểm bạn có mặt tại cửa hàng cho thấy một phần thói quen của bạn; nếu bị lộ, người khác có thể biết khi nào bạn đến đây. Ưu đãi bạn đã đồng ý nhận có thể đến nhiều hơn bạn muốn (không bao giờ vượt quá mức nêu trên); quảng cáo có thể hiển thị cho bạn trên các dịch vụ khác. Chúng tôi hạn chế các rủi ro này bằng mã hóa, chỉ giữ những gì cần thiết và xóa đúng hạn.

## Thời gian bắt đầu và kết thúc xử lý
Việc xử lý bắt đầu khi thiết bị của bạn kết nối WiFi này (đếm lượt ghé thăm) và khi bạn đăng nhập (mọi mục đích khác). Việc xử lý kết thúc khi bạn rút lại sự đồng ý, yêu cầu xóa dữ liệu, hoặc {retention} ngày sau lần ghé thăm cuối cùng, khi toàn bộ dữ liệu bị xóa. Bản ghi về sự đồng ý của bạn được giữ làm bằng chứng trong thời hạn pháp luật yêu cầu.

## Chuyển dữ liệu ra nước ngoài
{transfers}

## Bảo vệ dữ liệu
Email, số điện thoại và tên của bạn được mã hóa trên thiết bị của chúng tôi và chỉ được gửi qua kết nối mã hóa. Chỉ nhân viên được cửa hàng cho phép mới xem được, và mỗi lần xem đều được ghi lại.

## Quyền của bạn
Bạn có thể xem, chỉnh sửa dữ liệu, rút lại bất kỳ sự đồng ý nào, phản đối, hạn chế việc sử dụng, và yêu cầu xóa toàn bộ dữ liệu bất cứ lúc nào: tại trang "Dữ liệu của tôi" trên WiFi này hoặc bằng cách viết thư tới {contact}. Việc rút lại sự đồng ý không ảnh hưởng đến quyền truy cập WiFi. Bạn cũng có thể khiếu nại tới cơ quan bảo vệ dữ liệu cá nhân (tại Việt Nam là Bộ Công an, Cục A05; tại EU là cơ quan có thẩm quyền của quốc gia bạn).

## Liên hệ bảo vệ dữ liệu cá nhân
{dpo}""",
    },
}


# Defaults of earlier releases: an install still showing one of them gets the current default
# (portal/consent.ensure_policies). The marketing texts before they said the form and frequency
# of the messages (issue 15).
FORMER_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
    NOTICE: {  # before it carried every section the law lists (issue 15)
        "en": ("""## Who we are
{controller} runs this WiFi and decides how your data is used. Contact: {contact}.

## What we collect
The email address or phone number you give, your name if you give it, your device's network address (MAC) and IP address, and when your device is in the store (visits).

## Why we use it
To give you WiFi access (the terms you accept). To count visits and see how often customers come back, reported in totals. Only if you tick the matching box: to send you offers by email, by SMS or Zalo, or to show you our ads online. These boxes are optional and never needed to get online.

## How long we keep it
Up to {retention} days after your last visit; then it is deleted. The record of your consent is kept as proof for as long as the law requires.

## Who receives it
{controller}'s head office, to serve you across our stores. For the ads box only, Meta and Google receive a one-way hash of your email or phone. We never sell your data.

## How we protect it
Your email, phone and name are encrypted on our equipment and sent only over encrypted connections.

## Your rights
You can see your data, correct it, withdraw any consent, object, and have everything erased, at any time: on the "My data" page of this WiFi or by writing to {contact}. Withdrawing consent does not affect your WiFi access. You may also complain to the data-protection authority (in Vietnam the Ministry of Public Security, department A05; in the EU the authority of your country).""",),
        "vi": ("""## Chúng tôi là ai
{controller} vận hành mạng WiFi này và quyết định cách sử dụng dữ liệu của bạn. Liên hệ: {contact}.

## Dữ liệu chúng tôi thu thập
Email hoặc số điện thoại bạn cung cấp, tên của bạn nếu bạn cung cấp, địa chỉ mạng (MAC) và địa chỉ IP của thiết bị, và thời điểm thiết bị của bạn có mặt tại cửa hàng (lượt ghé thăm).

## Mục đích sử dụng
Để cung cấp truy cập WiFi (theo điều khoản bạn đồng ý). Để đếm lượt ghé thăm và biết khách hàng quay lại thường xuyên thế nào, dưới dạng số liệu tổng hợp. Chỉ khi bạn đánh dấu ô tương ứng: gửi ưu đãi qua email, qua SMS hoặc Zalo, hoặc hiển thị quảng cáo của chúng tôi trên mạng. Các ô này không bắt buộc và không bao giờ là điều kiện để truy cập mạng.

## Thời gian lưu trữ
Tối đa {retention} ngày sau lần ghé thăm cuối cùng, sau đó dữ liệu bị xóa. Bản ghi về sự đồng ý của bạn được giữ làm bằng chứng trong thời hạn pháp luật yêu cầu.

## Ai nhận dữ liệu
Văn phòng chính của {controller}, để phục vụ bạn tại các cửa hàng. Riêng với ô quảng cáo, Meta và Google nhận mã băm một chiều của email hoặc số điện thoại. Chúng tôi không bao giờ bán dữ liệu của bạn.

## Bảo vệ dữ liệu
Email, số điện thoại và tên của bạn được mã hóa trên thiết bị của chúng tôi và chỉ được gửi qua kết nối mã hóa.

## Quyền của bạn
Bạn có thể xem, chỉnh sửa dữ liệu, rút lại bất kỳ sự đồng ý nào, phản đối, và yêu cầu xóa toàn bộ dữ liệu bất cứ lúc nào: tại trang "Dữ liệu của tôi" trên WiFi này hoặc bằng cách viết thư tới {contact}. Việc rút lại sự đồng ý không ảnh hưởng đến quyền truy cập WiFi. Bạn cũng có thể khiếu nại tới cơ quan bảo vệ dữ liệu cá nhân (tại Việt Nam là Bộ Công an, Cục A05; tại EU là cơ quan có thẩm quyền của quốc gia bạn).""",),
    },
    "marketing_email": {
        "en": ("Send me offers and news from {store} by email. Optional; I can withdraw at any time.",),
        "vi": ("Gửi cho tôi ưu đãi và tin tức từ {store} qua email. Không bắt buộc; tôi có thể rút "
               "lại bất cứ lúc nào.",),
    },
    "marketing_sms": {
        "en": ("Send me offers from {store} by SMS or Zalo. Optional; I can withdraw at any time.",),
        "vi": ("Gửi cho tôi ưu đãi từ {store} qua SMS hoặc Zalo. Không bắt buộc; tôi có thể rút "
               "lại bất cứ lúc nào.",),
    },
    "ad_audiences": {
        "en": ("Use my email or phone, as a one-way hash, to show me {store}'s ads on Facebook, "
               "Instagram and Google. Optional; I can withdraw at any time.",),
        "vi": ("Dùng email hoặc số điện thoại của tôi (dưới dạng mã băm một chiều) để hiển thị "
               "quảng cáo của {store} trên Facebook, Instagram và Google. Không bắt buộc; tôi có "
               "thể rút lại bất cứ lúc nào.",),
    },
}
