"""The first versions of the texts visitors agree to, in both languages.

Each becomes a PolicyVersion when the database has none for its document and language, or
when the text in force is still one of FORMER_DEFAULTS (never edited by the owner); the panel
publishes later versions. Placeholders are filled from settings before hashing, so the
stored hash is the hash of exactly what was shown.
"""
from __future__ import annotations

from portal.core.purposes import MARKETING_PURPOSES, PURPOSES, REQUIRED_PURPOSE  # noqa: F401  (re-exported; defined in the core)

NOTICE = "privacy_notice"
DOCUMENTS = (*PURPOSES, NOTICE)

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
    "privacy_notice": {
        "en": """## Who we are
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
You can see your data, correct it, withdraw any consent, object, and have everything erased, at any time: on the "My data" page of this WiFi or by writing to {contact}. Withdrawing consent does not affect your WiFi access. You may also complain to the data-protection authority (in Vietnam the Ministry of Public Security, department A05; in the EU the authority of your country).""",
        "vi": """## Chúng tôi là ai
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
Bạn có thể xem, chỉnh sửa dữ liệu, rút lại bất kỳ sự đồng ý nào, phản đối, và yêu cầu xóa toàn bộ dữ liệu bất cứ lúc nào: tại trang "Dữ liệu của tôi" trên WiFi này hoặc bằng cách viết thư tới {contact}. Việc rút lại sự đồng ý không ảnh hưởng đến quyền truy cập WiFi. Bạn cũng có thể khiếu nại tới cơ quan bảo vệ dữ liệu cá nhân (tại Việt Nam là Bộ Công an, Cục A05; tại EU là cơ quan có thẩm quyền của quốc gia bạn).""",
    },
}


# Defaults of earlier releases: an install still showing one of them gets the current default
# (portal/consent.ensure_policies). The marketing texts before they said the form and frequency
# of the messages (issue 15).
FORMER_DEFAULTS: dict[str, dict[str, tuple[str, ...]]] = {
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
