"""The channels a notification goes by: email (SMTP) and a signed webhook (for an SMS gateway or a
Zalo Official Account bridge).

A webhook's body is JSON; its headers carry the time it was signed (``X-IOC-Timestamp``) and the
signature, ``X-IOC-Signature: sha256=<hex>``, an HMAC-SHA256 with the rule's secret of
``"{timestamp}.{body}"``, so a receiver can check that it comes from the IOC and is fresh
(``verify`` is what a receiver runs)."""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import time
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import orjson


class DeliveryError(Exception):
    """The channel refused or failed: tried again later."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300) -> bool:
    """What a webhook's receiver checks: the signature, and that it was made lately."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def send_email(smtp_url: str | None, sender: str, to: str, subject: str, text: str, timeout_s: float = 10) -> None:
    """One message through the SMTP server (``smtp://[user:password@]host:port``)."""
    if not smtp_url:
        raise DeliveryError("no SMTP server is set (IOC_SMTP_URL)")
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(text)
    try:
        with smtplib.SMTP(parts.hostname or "127.0.0.1", parts.port or 25, timeout=timeout_s) as smtp:
            if parts.username:
                smtp.starttls()
                smtp.login(parts.username, parts.password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from None


def send_webhook(client: httpx.Client, url: str, secret: str, payload: dict) -> None:
    body = orjson.dumps(payload)
    timestamp = f"{time.time():.0f}"
    headers = {
        "Content-Type": "application/json",
        "X-IOC-Timestamp": timestamp,
        "X-IOC-Signature": sign(secret, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from None
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
