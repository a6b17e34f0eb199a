"""Zalo Notification Service: template messages only (the owner's template, approved by Zalo),
as Zalo's Official Account API documents it: POST https://business.openapi.zalo.me/message/template
with the OA's `access_token` header and {phone, template_id, template_data, tracking_id}; the answer
is {"error": 0, "data": {"msg_id": ...}} or a negative error code with a message."""
from __future__ import annotations

from portal.messages import Message, MessageError
from portal.messages.httpjson import post_json

DEFAULT_URL = "https://business.openapi.zalo.me/message/template"
# Zalo's codes for an expired/invalid token or an exhausted quota can pass; the others will not.
_TEMPORARY = {-124, -1, -32}


class ZnsDriver:
    name = "zns"

    def __init__(self, access_token: str, template_id: str, url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        self.access_token, self.template_id, self.url, self.timeout = access_token, template_id, url, timeout

    @classmethod
    def from_settings(cls, settings) -> "ZnsDriver":
        return cls(settings.zalo_access_token, settings.zalo_template_id, settings.zalo_url or DEFAULT_URL)

    def send(self, message: Message) -> str:
        answer = post_json(self.url, {
            "phone": message.to.lstrip("+"), "template_id": message.params.get("template_id", self.template_id),
            "template_data": {k: v for k, v in message.params.items() if k != "template_id"},
            "tracking_id": message.id}, headers={"access_token": self.access_token}, timeout=self.timeout)
        error = answer.get("error")
        data = answer.get("data")
        if error == 0 and isinstance(data, dict) and isinstance(data.get("msg_id"), str):
            return data["msg_id"]
        if not isinstance(error, int):
            raise MessageError("zns_garbage", temporary=True)
        raise MessageError(f"zns_{error}", temporary=error in _TEMPORARY)
