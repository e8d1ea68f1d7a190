import hashlib
import hmac
import secrets
import time
from datetime import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

# ingest: POST events; read: the read API; metrics: GET /metrics (sphere_stats/metrics.py).
SCOPES = ("ingest", "read", "metrics")
TOKEN_PREFIX = "sst_"  # noqa: S105 (a marker, not a secret)


def hash_token(raw: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing
    # to brute-force, and ingest must not spend milliseconds per request on it.
    return hashlib.sha256(raw.encode()).hexdigest()


# Tokens found valid, by hash, each until a monotonic deadline. A single
# event POST otherwise spends one of its two database round trips looking
# its token up. Only valid tokens are kept (unknown ones are never cached, so
# guessing fills no memory); a revocation clears this process's entries at
# once and reaches every other worker within API_TOKEN_CACHE_SECONDS.
_recent: dict[str, tuple[float, "ApiToken"]] = {}


def forget_tokens() -> None:
    """Drop this process's cached tokens (after a revocation)."""
    _recent.clear()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True)

    def authenticate(self, raw: str) -> "ApiToken | None":
        """The active token whose secret is `raw`, or None."""
        digest = hash_token(raw)
        ttl = settings.API_TOKEN_CACHE_SECONDS
        cached = _recent.get(digest)
        if cached and cached[0] > time.monotonic():
            token = cached[1]
        else:
            token = self.active().filter(key_hash=digest).first()
            if token and ttl > 0:
                _recent[digest] = (time.monotonic() + ttl, token)
        # The lookup is by hash, so timing reveals nothing of the secret; the
        # constant-time compare guards against a future change of lookup.
        if token and hmac.compare_digest(token.key_hash, digest):
            return token
        return None


class ApiToken(models.Model):
    """A credential for the JSON API. The secret is shown once and stored hashed."""

    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters of the secret, so an admin can tell tokens apart.
    prefix = models.CharField(max_length=12, editable=False)
    scopes = ArrayField(models.CharField(max_length=20), default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        db_table = "api_tokens"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, name: str, scopes: list[str]) -> tuple["ApiToken", str]:
        """Create a token; returns it with the raw secret, which is not stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            name=name, key_hash=hash_token(raw), prefix=raw[:10], scopes=sorted(set(scopes))
        )
        return token, raw

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class WorkerJob(models.Model):
    """The last run of each background job (sphere_stats/worker.py): what an
    operator checks to see that the worker is alive and its jobs succeed."""

    name = models.CharField(max_length=100, primary_key=True)
    last_run = models.DateTimeField()
    last_ok = models.DateTimeField(null=True)
    seconds = models.FloatField(default=0)
    handled = models.BigIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "worker_jobs"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def record(cls, name: str, now: datetime, seconds: float, handled: int, error: str) -> None:
        fields = {"last_run": now, "seconds": seconds, "handled": handled, "last_error": error}
        if not error:
            fields["last_ok"] = now
        cls.objects.update_or_create(name=name, defaults=fields)
