"""One message layer for verification codes now and, from the scheduler, automated messages later.

Drivers per channel, chosen by settings: `console` (the demo: printed to the process's standard
output, code included), `smtp` (email), `esms` (SMS brandname through eSMS.vn's REST API), `zns`
(Zalo Notification Service template messages), or `none`. A Dispatcher sends beside the request
that asked (a bounded queue and worker threads, retries with backoff on temporary failures), so a
slow provider never holds a visitor's page; each send ends in a Delivery the caller can look up.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

logger = logging.getLogger(__name__)

CHANNELS = ("email", "sms", "zalo")


@dataclass(frozen=True)
class Message:
    channel: str            # email | sms | zalo
    to: str                 # an email address, or a phone in E.164
    text: str               # the plain text (SMS content; the email's text part)
    subject: str = ""
    html: str = ""
    language: str = "vi"
    params: dict = field(default_factory=dict)  # template parameters (Zalo ZNS sends templates only)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    headers: dict = field(default_factory=dict)  # email only: extra headers (List-Unsubscribe, RFC 8058)


class MessageError(Exception):
    """The provider refused or failed; `temporary` says whether trying again may help."""

    def __init__(self, reason: str, temporary: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.temporary = reason, temporary


class Driver(Protocol):
    name: str

    def send(self, message: Message) -> str:
        """Send now; returns the provider's message id; raises MessageError."""


@dataclass
class Delivery:
    message_id: str
    state: str = "queued"   # queued | sent | failed
    provider_id: str | None = None
    error: str | None = None
    attempts: int = 0


class Dispatcher:
    """Sends in worker threads; `submit` answers at once, `delivery(id)` tells how it went."""

    def __init__(self, drivers: dict[str, Driver], workers: int = 2, depth: int = 200, retries: int = 3,
                 backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.drivers, self.retries, self.backoff, self.sleep = drivers, retries, backoff, sleep
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self._deliveries: dict[str, Delivery] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"messages-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, message: Message) -> Delivery:
        delivery = Delivery(message.id)
        with self._lock:
            self._deliveries[message.id] = delivery
            if len(self._deliveries) > 10_000:  # bounded memory: forget the oldest outcomes
                for key in list(self._deliveries)[:1000]:
                    del self._deliveries[key]
        if message.channel not in self.drivers:
            self._fail(delivery, "channel_off")
            return delivery
        try:
            self.queue.put_nowait(message)
        except queue.Full:
            self._fail(delivery, "queue_full")
        return delivery

    def delivery(self, message_id: str) -> Delivery | None:
        with self._lock:
            return self._deliveries.get(message_id)

    def wait(self, message_id: str, timeout: float = 10.0) -> Delivery | None:
        """For tests and the CLI: block until the message is sent or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.delivery(message_id)
            if d is None or d.state != "queued":
                return d
            time.sleep(0.02)
        return self.delivery(message_id)

    def _fail(self, delivery: Delivery, reason: str) -> None:
        delivery.state, delivery.error = "failed", reason
        logger.warning("message %s not sent: %s", delivery.message_id, reason)

    def _work(self) -> None:
        while True:
            message = self.queue.get()
            delivery = self.delivery(message.id) or Delivery(message.id)
            driver = self.drivers[message.channel]
            for attempt in range(1, self.retries + 1):
                delivery.attempts = attempt
                try:
                    delivery.provider_id = driver.send(message)
                    delivery.state = "sent"
                    break
                except MessageError as exc:
                    if not exc.temporary or attempt == self.retries:
                        self._fail(delivery, exc.reason)
                        break
                    self.sleep(self.backoff * 2 ** (attempt - 1))
                except Exception:  # a driver bug must not kill the worker: logged with its traceback
                    logger.exception("driver %s failed on message %s", driver.name, message.id)
                    self._fail(delivery, "driver_error")
                    break


def load_drivers(settings) -> dict[str, Driver]:
    """The drivers the settings turn on, per channel."""
    from portal.messages import console, esms, smtp, zns

    chosen = {"email": settings.email_driver, "sms": settings.sms_driver, "zalo": settings.zalo_driver}
    drivers: dict[str, Driver] = {}
    for channel, name in chosen.items():
        if name == "none":
            continue
        if name == "console":
            drivers[channel] = console.ConsoleDriver()
        elif channel == "email" and name == "smtp":
            drivers[channel] = smtp.SmtpDriver.from_settings(settings)
        elif channel == "sms" and name == "esms":
            drivers[channel] = esms.EsmsDriver.from_settings(settings)
        elif channel == "zalo" and name == "zns":
            drivers[channel] = zns.ZnsDriver.from_settings(settings)
        else:
            raise ValueError(f"{channel}_driver: unknown driver {name!r}")
    return drivers
