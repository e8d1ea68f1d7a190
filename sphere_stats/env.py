"""Typed readers for configuration from the environment.

Each helper fails loudly on a value it cannot parse: a typo in a deployment's
environment should stop the server at start, not change behaviour quietly.
"""

import ipaddress
import os
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def envlist(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int


def envrate(name: str, default: str) -> Rate | None:
    """`600/60` (600 requests per 60 seconds); `0`, `off` or empty: no limit."""
    raw = os.environ.get(name, default).strip()
    if raw in ("", "0", "off"):
        return None
    requests, _, seconds = raw.partition("/")
    try:
        rate = Rate(int(requests), int(seconds or 60))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate: use REQUESTS/SECONDS such as 600/60, or 0 for none"
        ) from None
    if rate.requests < 1 or rate.seconds < 1:
        raise ImproperlyConfigured(f"{name}={raw!r}: both numbers must be positive")
    return rate


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def envnetworks(name: str, default: str = "") -> list[Network]:
    """Comma-separated networks in CIDR form (`10.0.0.0/8,2001:db8::/32`); a
    bare address is a network of one. Host bits set (`10.0.0.1/8`) are an
    error: such a value usually means another network than it says."""
    networks = []
    for item in envlist(name, default):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a network ({exc})") from None
    return networks
