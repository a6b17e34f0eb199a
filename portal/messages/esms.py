"""SMS brandname through eSMS.vn (a gateway Vietnamese shops use), as its REST API documents it:
POST .../MainService.svc/json/SendMultipleMessage_V4_post_json/ with ApiKey, SecretKey, Phone,
Content, Brandname and SmsType 2 (customer care, the type OTP codes use); CodeResult "100" is
accepted (SMSID), anything else an error (101 credentials, 104 brandname, 124 duplicate request,
146 unregistered template, 99 bad request)."""
from __future__ import annotations

from portal.messages import Message, MessageError
from portal.messages.httpjson import post_json

DEFAULT_URL = "https://rest.esms.vn/MainService.svc/json/SendMultipleMessage_V4_post_json/"
# Errors worth another try later; the others need the owner (credentials, brandname, template).
_TEMPORARY = {"99"}


class EsmsDriver:
    name = "esms"

    def __init__(self, api_key: str, secret_key: str, brandname: str, url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        self.api_key, self.secret_key, self.brandname, self.url, self.timeout = api_key, secret_key, brandname, url, timeout

    @classmethod
    def from_settings(cls, settings) -> "EsmsDriver":
        return cls(settings.esms_api_key, settings.esms_secret_key, settings.esms_brandname, settings.esms_url or DEFAULT_URL)

    def send(self, message: Message) -> str:
        phone = message.to.lstrip("+")  # eSMS takes 84xxxxxxxxx
        answer = post_json(self.url, {
            "ApiKey": self.api_key, "SecretKey": self.secret_key, "Phone": phone, "Content": message.text,
            "Brandname": self.brandname, "SmsType": "2", "IsUnicode": "1" if not message.text.isascii() else "0",
            "RequestId": message.id}, timeout=self.timeout)
        code = str(answer.get("CodeResult", ""))
        if code == "100" and isinstance(answer.get("SMSID"), str):
            return answer["SMSID"]
        if code == "124":  # this very request was already accepted (a retry after a lost answer)
            return f"duplicate:{message.id}"
        raise MessageError(f"esms_{code or 'garbage'}", temporary=code in _TEMPORARY or not code)
