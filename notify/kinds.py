"""The kinds of channel, one small class each in one registry (`KINDS`).

Every kind has the same shape: `check(channel)` says what a channel of
that kind is missing (the admin form shows it), and `send(channel,
delivery)` makes one attempt and returns an `Outcome`; it never raises for
a failure of the far end (a refused connection, a 5xx, an SMTP error), so
the outbox can record it and try again. Adding a kind means copying a
sibling and adding it to `KINDS`.
"""

import smtplib
from typing import Protocol

from django.conf import settings
from django.core.mail import EmailMessage

from sphere_stats.webhooks import DELIVERY_HEADER, Outcome, post


class Kind(Protocol):
    label: str

    def check(self, channel) -> dict[str, str]: ...

    def send(self, channel, delivery) -> Outcome: ...


class Webhook:
    """POSTs the delivery's stored JSON body, signed with the channel's
    secret (sphere_stats/webhooks.py), to the channel's URL."""

    label = "Webhook (signed JSON POST)"

    def check(self, channel) -> dict[str, str]:
        return {} if channel.url else {"url": "A webhook channel needs a URL."}

    def send(self, channel, delivery) -> Outcome:
        return post(
            channel.url,
            delivery.body.encode(),
            secret=channel.secret,
            delivery=str(delivery.delivery_id),
        )


class Email:
    """Mails the delivery's subject and text to the channel's recipients
    through Django's mail settings (EMAIL_HOST, EMAIL_PORT, ...)."""

    label = "Email"

    def check(self, channel) -> dict[str, str]:
        if channel.recipient_list():
            return {}
        return {"recipients": "An email channel needs at least one recipient."}

    def send(self, channel, delivery) -> Outcome:
        message = EmailMessage(
            subject=delivery.subject,
            body=delivery.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=channel.recipient_list(),
            # The same value on every retry, as for a webhook, so a reader
            # (or a mail filter) can recognise a duplicate.
            headers={DELIVERY_HEADER: str(delivery.delivery_id)},
        )
        try:
            message.send()
        except smtplib.SMTPResponseException as e:
            reply = (
                e.smtp_error.decode(errors="replace")
                if isinstance(e.smtp_error, bytes)
                else e.smtp_error
            )
            return Outcome(False, e.smtp_code, f"SMTP {e.smtp_code}: {reply}"[:500])
        except (smtplib.SMTPException, OSError) as e:
            return Outcome(False, None, f"{type(e).__name__}: {e}"[:500])
        return Outcome(True, None, "")


KINDS: dict[str, Kind] = {"webhook": Webhook(), "email": Email()}
