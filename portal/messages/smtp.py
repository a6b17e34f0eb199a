"""Email through any SMTP server: STARTTLS, implicit TLS or plain (local relays), optional login;
multipart text + HTML in the visitor's language."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from portal.messages import Message, MessageError

SECURITY = ("starttls", "ssl", "none")


class SmtpDriver:
    name = "smtp"

    def __init__(self, host: str, port: int, sender: str, security: str = "starttls", user: str = "",
                 password: str = "", ca_file: str = "", timeout: float = 15.0) -> None:
        if security not in SECURITY:
            raise ValueError(f"smtp_security must be one of {', '.join(SECURITY)}")
        self.host, self.port, self.sender, self.security = host, port, sender, security
        self.user, self.password, self.ca_file, self.timeout = user, password, ca_file, timeout

    @classmethod
    def from_settings(cls, settings) -> "SmtpDriver":
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_from, settings.smtp_security,
                   settings.smtp_user, settings.smtp_password, settings.smtp_ca_file)

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file or None)  # verification always on

    def send(self, message: Message) -> str:
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = self.sender, message.to, message.subject
        email["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        for name, value in message.headers.items():
            email[name] = value
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        email["Content-Language"] = message.language  # after: making it multipart moves Content-* headers
        try:
            if self.security == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.security == "starttls":
                    client.starttls(context=self._context())
                if self.user:
                    client.login(self.user, self.password)
                client.send_message(email)
        except smtplib.SMTPRecipientsRefused:
            raise MessageError("recipient_refused") from None
        except smtplib.SMTPAuthenticationError:
            raise MessageError("smtp_auth_failed") from None
        except smtplib.SMTPResponseException as exc:
            raise MessageError(f"smtp_{exc.smtp_code}", temporary=400 <= exc.smtp_code < 500) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MessageError(f"smtp_unreachable: {exc.__class__.__name__}", temporary=True) from None
        return email["Message-ID"]
