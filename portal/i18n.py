"""Interface strings in Vietnamese and English, and the choice between them.

Two languages and a few dozen strings: a dict keeps the exact texts reviewable in one place.
Policy texts (what visitors agree to) are versioned in the database instead, see consent.py.
"""
from __future__ import annotations

from portal.core.purposes import LANGUAGES

MESSAGES: dict[str, dict[str, str]] = {
    "title": {"en": "Free WiFi", "vi": "WiFi miễn phí"},
    "lead_in": {"en": "Leave an email or a phone number to get online.",
                "vi": "Để lại email hoặc số điện thoại để truy cập Internet."},
    "email": {"en": "Email", "vi": "Email"},
    "phone": {"en": "Phone number", "vi": "Số điện thoại"},
    "or": {"en": "or", "vi": "hoặc"},
    "name": {"en": "Your name (optional)", "vi": "Tên của bạn (không bắt buộc)"},
    "name_short": {"en": "Name", "vi": "Tên"},
    "marketing_heading": {"en": "Optional — not needed to get online",
                          "vi": "Không bắt buộc — không cần để truy cập mạng"},
    "connect": {"en": "Connect", "vi": "Kết nối"},
    "privacy_link": {"en": "Privacy notice", "vi": "Thông báo quyền riêng tư"},
    "my_data_link": {"en": "My data", "vi": "Dữ liệu của tôi"},
    "other_language": {"en": "Tiếng Việt", "vi": "English"},
    "welcome_back": {"en": "Welcome back", "vi": "Chào mừng bạn quay lại"},
    "welcome_back_lead": {"en": "Tap to get online again with the choices you made before.",
                          "vi": "Chạm để kết nối lại với các lựa chọn bạn đã đưa ra trước đây."},
    "not_you": {"en": "Not you? Use other details", "vi": "Không phải bạn? Dùng thông tin khác"},
    "online_title": {"en": "You are online", "vi": "Bạn đã kết nối"},
    "online_until": {"en": "Your session lasts until", "vi": "Phiên truy cập của bạn kéo dài đến"},
    "continue_to": {"en": "Continue to", "vi": "Tiếp tục tới"},
    "done_hint": {"en": "You can close this window.", "vi": "Bạn có thể đóng cửa sổ này."},
    "privacy_title": {"en": "Privacy notice", "vi": "Thông báo về quyền riêng tư"},
    "policy_version": {"en": "Version", "vi": "Phiên bản"},
    "back": {"en": "Back", "vi": "Quay lại"},
    "my_data_title": {"en": "My data", "vi": "Dữ liệu của tôi"},
    "my_data_none": {"en": "We hold nothing about this device.",
                     "vi": "Chúng tôi không lưu dữ liệu nào về thiết bị này."},
    "my_data_device": {"en": "This device", "vi": "Thiết bị này"},
    "first_seen": {"en": "First seen", "vi": "Lần đầu thấy"},
    "visits": {"en": "Visits recorded", "vi": "Số lượt ghé thăm"},
    "masked_note": {"en": "Details are partly hidden so that nobody else on this network can read them.",
                    "vi": "Thông tin được che một phần để người khác trên mạng này không đọc được."},
    "consents": {"en": "Your choices", "vi": "Lựa chọn của bạn"},
    "granted": {"en": "agreed", "vi": "đã đồng ý"},
    "withdrawn": {"en": "withdrawn", "vi": "đã rút lại"},
    "not_given": {"en": "not given", "vi": "chưa đồng ý"},
    "withdraw": {"en": "Withdraw", "vi": "Rút lại"},
    "history": {"en": "Consent history", "vi": "Lịch sử đồng ý"},
    "erase_title": {"en": "Erase everything", "vi": "Xóa toàn bộ"},
    "erase_text": {"en": "Deletes your details, this device's visits and your session here and at our head office. "
                           "You will need to sign in again to use the WiFi.",
                   "vi": "Xóa thông tin của bạn, các lượt ghé thăm của thiết bị này và phiên truy cập, tại đây và "
                         "tại văn phòng chính. Bạn sẽ cần đăng nhập lại để dùng WiFi."},
    "erase_confirm": {"en": "Yes, erase my data", "vi": "Có, xóa dữ liệu của tôi"},
    "erase": {"en": "Erase", "vi": "Xóa"},
    "erased": {"en": "Your data has been erased.", "vi": "Dữ liệu của bạn đã được xóa."},
    "withdrawn_done": {"en": "Your choice has been recorded.", "vi": "Lựa chọn của bạn đã được ghi nhận."},
    "error_title": {"en": "Something is not right", "vi": "Có lỗi xảy ra"},
    "try_again": {"en": "Start again", "vi": "Thử lại"},
    "form_errors": {"en": "Please check the fields marked below.",
                    "vi": "Vui lòng kiểm tra các trường được đánh dấu bên dưới."},
    # Purposes, as short labels (the full, versioned statement is shown beside each box).
    "purpose_wifi_terms": {"en": "WiFi terms", "vi": "Điều khoản WiFi"},
    "purpose_marketing_email": {"en": "Offers by email", "vi": "Ưu đãi qua email"},
    "purpose_marketing_sms": {"en": "Offers by SMS / Zalo", "vi": "Ưu đãi qua SMS / Zalo"},
    "purpose_ad_audiences": {"en": "Online ads", "vi": "Quảng cáo trực tuyến"},
    "method_portal_form": {"en": "WiFi sign-in form", "vi": "biểu mẫu đăng nhập WiFi"},
    "method_portal_my_data": {"en": "My data page", "vi": "trang Dữ liệu của tôi"},
    "method_erasure": {"en": "erasure", "vi": "xóa dữ liệu"},
    # Errors, by code.
    "err_contact_missing": {"en": "Enter an email address or a phone number.",
                            "vi": "Nhập email hoặc số điện thoại."},
    "err_email_missing": {"en": "Enter an email address.", "vi": "Nhập địa chỉ email."},
    "err_email_invalid": {"en": "This email address does not look right.", "vi": "Địa chỉ email không hợp lệ."},
    "err_email_needed_for_marketing": {"en": "Enter an email address to receive offers by email.",
                                       "vi": "Nhập email để nhận ưu đãi qua email."},
    "err_phone_missing": {"en": "Enter a phone number.", "vi": "Nhập số điện thoại."},
    "err_phone_invalid": {"en": "This phone number does not look right.", "vi": "Số điện thoại không hợp lệ."},
    "err_phone_needed_for_marketing": {"en": "Enter a phone number to receive offers by SMS or Zalo.",
                                       "vi": "Nhập số điện thoại để nhận ưu đãi qua SMS hoặc Zalo."},
    "err_name_too_long": {"en": "The name is too long.", "vi": "Tên quá dài."},
    "err_name_invalid": {"en": "The name may hold letters, spaces and . ' - only.",
                         "vi": "Tên chỉ được chứa chữ cái, khoảng trắng và . ' -"},
    "err_terms_required": {"en": "Accept the WiFi terms to get online.",
                           "vi": "Bạn cần đồng ý điều khoản WiFi để truy cập mạng."},
    "err_purpose_unknown": {"en": "Unknown choice.", "vi": "Lựa chọn không hợp lệ."},
    "err_device_unknown": {"en": "We cannot identify your device on this network. Reconnect to the WiFi and try again.",
                           "vi": "Không nhận diện được thiết bị của bạn. Hãy kết nối lại WiFi và thử lại."},
    "err_not_recognised": {"en": "We do not recognise this device. Please sign in with the form.",
                           "vi": "Chúng tôi không nhận ra thiết bị này. Vui lòng đăng nhập bằng biểu mẫu."},
    "err_gateway_failed": {"en": "We could not open the connection. Please try again in a moment.",
                           "vi": "Không thể mở kết nối. Vui lòng thử lại sau giây lát."},
    "err_rate_limited": {"en": "Too many attempts from this device. Please wait a few minutes.",
                         "vi": "Quá nhiều lần thử từ thiết bị này. Vui lòng đợi vài phút."},
    "err_csrf": {"en": "This page has expired. Please start again.",
                 "vi": "Trang này đã hết hạn. Vui lòng thử lại."},
    "err_bad_request": {"en": "The request could not be understood.", "vi": "Không hiểu được yêu cầu."},
    "err_bad_characters": {"en": "The request holds characters we cannot accept.",
                           "vi": "Yêu cầu chứa ký tự không được chấp nhận."},
    "err_too_large": {"en": "The request is too large.", "vi": "Yêu cầu quá lớn."},
    "err_not_found": {"en": "This page does not exist.", "vi": "Trang này không tồn tại."},
    "err_method": {"en": "This action is not allowed here.", "vi": "Không cho phép thao tác này tại đây."},
    "err_fas_invalid": {"en": "This sign-in link is not valid. Reconnect to the WiFi and open any web page to try again.",
                        "vi": "Liên kết đăng nhập này không hợp lệ. Hãy kết nối lại WiFi và mở một trang web bất kỳ để thử lại."},
    "err_busy": {"en": "Many people are signing in right now. Please try again in a few seconds.",
                 "vi": "Đang có nhiều người đăng nhập cùng lúc. Vui lòng thử lại sau vài giây."},
    "err_storage": {"en": "This device's storage is full, so this could not be saved. Please tell the staff.",
                    "vi": "Bộ nhớ của thiết bị đã đầy nên không thể lưu. Vui lòng báo cho nhân viên."},
    "details_not_kept": {"en": "You are online. Our storage is full, so your details were not saved: nothing about you was kept.",
                         "vi": "Bạn đã được kết nối. Bộ nhớ của chúng tôi đã đầy nên thông tin của bạn không được lưu: không có gì về bạn được giữ lại."},
    "err_fas_timeout": {"en": "The WiFi router did not confirm your connection. Reconnect to the WiFi and open any web page to try again.",
                        "vi": "Bộ định tuyến WiFi chưa xác nhận kết nối của bạn. Hãy kết nối lại WiFi và mở một trang web bất kỳ để thử lại."},
    "fas_wait_title": {"en": "Connecting you…", "vi": "Đang kết nối…"},
    "fas_wait_lead": {"en": "The WiFi router is letting your device online. This takes a few seconds.",
                      "vi": "Bộ định tuyến WiFi đang cho thiết bị của bạn truy cập mạng. Việc này mất vài giây."},
    "fas_wait_check": {"en": "Check again", "vi": "Kiểm tra lại"},
    "err_server": {"en": "Something went wrong on our side. Please try again.",
                   "vi": "Đã có lỗi từ phía chúng tôi. Vui lòng thử lại."},
}


from portal.i18n_panel import PANEL_MESSAGES  # noqa: E402  (after MESSAGES, which it extends)

MESSAGES.update(PANEL_MESSAGES)


def translate(key: str, language: str) -> str:
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    return entry.get(language) or entry["en"]


def negotiate(requested: str | None, cookie: str | None, accept_languages, default: str) -> str:
    """An explicit choice, then the remembered one, then the browser's, then the store's default."""
    for candidate in (requested, cookie):
        if candidate in LANGUAGES:
            return candidate
    best = accept_languages.best_match(LANGUAGES) if accept_languages else None
    return best or default
