"""The message layer against real servers: aiosmtpd for email (plain and STARTTLS with a throwaway
CA), local servers speaking eSMS.vn's and Zalo ZNS's documented APIs (errors, timeouts, garbage)."""
from __future__ import annotations

import io
import ssl
import time

import pytest
import trustme
from aiosmtpd.controller import Controller

from portal.messages import Dispatcher, Message, MessageError
from portal.messages.console import ConsoleDriver
from portal.messages.esms import EsmsDriver
from portal.messages.smtp import SmtpDriver
from portal.messages.zns import ZnsDriver
from tests.messages.providers import Inbox, Provider, free_port


@pytest.fixture
def starttls_server(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=server_context,
                            require_starttls=True)
    controller.start()
    yield controller.port, inbox, str(ca_file)
    controller.stop()


CODE_VI = Message("email", "lan@example.com", "Mã xác minh của bạn: 482913", subject="Mã xác minh WiFi Cà Phê",
                  html="<p>Mã xác minh của bạn: <b>482913</b></p>", language="vi")


def test_smtp_sends_multipart_text_and_html_in_the_visitors_language(smtp_server):
    port, inbox = smtp_server
    SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="none").send(CODE_VI)
    (rcpt, msg), = inbox.messages
    assert rcpt == ["lan@example.com"] and msg["Subject"] == "Mã xác minh WiFi Cà Phê"
    assert msg["Content-Language"] == "vi" and msg.is_multipart()
    assert msg.get_body(("plain",)).get_content().strip() == "Mã xác minh của bạn: 482913"
    assert "<b>482913</b>" in msg.get_body(("html",)).get_content()


def test_smtp_starttls_verifies_the_server(starttls_server):
    port, inbox, ca_file = starttls_server
    SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="starttls", ca_file=ca_file).send(CODE_VI)
    assert len(inbox.messages) == 1
    with pytest.raises(MessageError) as refused:  # the system's CAs do not know the throwaway one
        SmtpDriver("127.0.0.1", port, "wifi@caphe.example", security="starttls").send(CODE_VI)
    assert refused.value.reason.startswith("smtp_unreachable") and len(inbox.messages) == 1


def test_smtp_down_is_a_temporary_failure():
    with pytest.raises(MessageError) as failed:
        SmtpDriver("127.0.0.1", 9, "wifi@caphe.example", security="none", timeout=2).send(CODE_VI)
    assert failed.value.temporary


SMS = Message("sms", "+84912345678", "Ma xac minh WiFi: 482913")


@pytest.fixture
def esms():
    provider = Provider("esms")
    yield provider
    provider.close()


@pytest.fixture
def zns():
    provider = Provider("zns")
    yield provider
    provider.close()


def test_esms_sends_as_documented(esms):
    sms_id = EsmsDriver("key", "secret", "CAPHE", url=esms.url).send(SMS)
    body = esms.received[0]["body"]
    assert sms_id == "sms-1"
    assert body == {"ApiKey": "key", "SecretKey": "secret", "Phone": "84912345678", "Content": SMS.text,
                    "Brandname": "CAPHE", "SmsType": "2", "IsUnicode": "0", "RequestId": SMS.id}


@pytest.mark.parametrize("mode,reason,temporary", [("101", "esms_101", False), ("104", "esms_104", False),
                                                    ("99", "esms_99", True), ("garbage", "provider_garbage", True),
                                                    ("http500", "provider_http_500", True)])
def test_esms_errors(esms, mode, reason, temporary):
    esms.mode = mode
    with pytest.raises(MessageError) as failed:
        EsmsDriver("key", "secret", "CAPHE", url=esms.url).send(SMS)
    assert (failed.value.reason, failed.value.temporary) == (reason, temporary)


def test_esms_timeout_is_temporary(esms):
    esms.slow = 2.0
    with pytest.raises(MessageError) as failed:
        EsmsDriver("key", "secret", "CAPHE", url=esms.url, timeout=0.5).send(SMS)
    assert failed.value.reason == "provider_unreachable: TimeoutError" and failed.value.temporary


ZALO = Message("zalo", "+84912345678", "", params={"otp": "482913"})


def test_zns_sends_the_template_with_its_parameters(zns):
    assert ZnsDriver("oa-token", "231457", url=zns.url).send(ZALO) == "zns-1"
    sent = zns.received[0]
    assert sent["headers"]["access_token"] == "oa-token"
    assert sent["body"] == {"phone": "84912345678", "template_id": "231457", "template_data": {"otp": "482913"},
                            "tracking_id": ZALO.id}


@pytest.mark.parametrize("mode,token,reason,temporary", [("-108", "oa-token", "zns_-108", False),
                                                          ("ok", "stale-token", "zns_-124", True),
                                                          ("garbage", "oa-token", "provider_garbage", True)])
def test_zns_errors(zns, mode, token, reason, temporary):
    zns.mode = mode
    with pytest.raises(MessageError) as failed:
        ZnsDriver(token, "231457", url=zns.url).send(ZALO)
    assert (failed.value.reason, failed.value.temporary) == (reason, temporary)


def test_provider_urls_must_be_https_except_on_loopback():
    with pytest.raises(MessageError) as refused:
        EsmsDriver("key", "secret", "CAPHE", url="http://rest.esms.example/x").send(SMS)
    assert refused.value.reason == "provider_url_not_https"


def test_the_dispatcher_answers_at_once_and_sends_beside(esms):
    esms.slow = 2.0  # a provider that takes two seconds
    dispatcher = Dispatcher({"sms": EsmsDriver("key", "secret", "CAPHE", url=esms.url)}, backoff=0.01)
    started = time.perf_counter()
    delivery = dispatcher.submit(SMS)
    submitted_in = time.perf_counter() - started
    assert delivery.state == "queued" and submitted_in < 0.5
    assert dispatcher.wait(SMS.id, timeout=10).state == "sent"


def test_the_dispatcher_retries_temporary_failures_only(esms):
    esms.mode = "99"
    dispatcher = Dispatcher({"sms": EsmsDriver("key", "secret", "CAPHE", url=esms.url)}, retries=3, backoff=0.01)
    failed = dispatcher.wait(dispatcher.submit(SMS).message_id)
    assert (failed.state, failed.error, failed.attempts, len(esms.received)) == ("failed", "esms_99", 3, 3)
    esms.mode = "101"
    other = Message("sms", "+84912345679", "x")
    refused = dispatcher.wait(dispatcher.submit(other).message_id)
    assert (refused.state, refused.attempts, len(esms.received)) == ("failed", 1, 4)


def test_a_channel_that_is_off_fails_at_once_and_a_full_queue_refuses(esms):
    assert Dispatcher({}, workers=1).submit(SMS).error == "channel_off"
    esms.slow = 1.0
    busy = Dispatcher({"sms": EsmsDriver("k", "s", "B", url=esms.url)}, workers=1, depth=1, retries=1)
    first = busy.submit(Message("sms", "+84900000001", "x"))
    time.sleep(0.3)  # the worker has taken it and waits on the provider
    second = busy.submit(Message("sms", "+84900000002", "x"))  # fills the queue
    third = busy.submit(Message("sms", "+84900000003", "x"))
    assert (third.state, third.error) == ("failed", "queue_full")
    assert busy.wait(first.message_id).state == "sent" and busy.wait(second.message_id).state == "sent"


def test_console_prints_the_message_with_its_code():
    out = io.StringIO()
    ConsoleDriver(out).send(SMS)
    assert out.getvalue() == "[message sms to +84912345678] Ma xac minh WiFi: 482913\n"
