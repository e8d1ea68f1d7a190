"""The JSON API: one NinjaAPI, one error shape, one token authentication.

Every error of every status is `{"error": "...", "details": [...]}`, built by
`api_error`; views raise `ApiError` and the handlers below turn exceptions
into that shape. The OpenAPI schema is generated from these declarations.
"""

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.utils import timezone
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from ninja.security import APIKeyHeader, HttpBearer

from sphere_stats.models import ApiToken

RETRY_AFTER_SECONDS = 5


class ErrorDetail(Schema):
    index: int | None = None
    field: str | None = None
    message: str


class Error(Schema):
    error: str
    details: list[ErrorDetail] = []


class ApiError(Exception):
    """Raise from any API view to answer with the shared error shape."""

    def __init__(
        self,
        status: int,
        error: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details or []
        self.headers = headers or {}


def api_error(
    status: int,
    error: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse({"error": error, "details": details or []}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def database_unavailable() -> JsonResponse:
    return api_error(
        503,
        "The database is unavailable; nothing was written. Retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


# Responses every authenticated operation may give, for the OpenAPI schema.
ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 429: Error, 503: Error}


def _check_scope(token: ApiToken | None, scope: str) -> ApiToken | None:
    if token is None:
        return None
    if not token.has_scope(scope):
        raise ApiError(403, f"This token lacks the '{scope}' scope.")
    now = timezone.now()
    # Touch last_used at most once a minute: a write per request would double
    # the cost of single-event ingest.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # the cached copy, too
    return token


# The token checks read request.META, not request.headers as ninja's do:
# building that mapping of every header cost more than the rest of the check.


class BearerToken(HttpBearer):
    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return _check_scope(ApiToken.objects.authenticate(token), self.scope)


class ApiKeyToken(APIKeyHeader):
    param_name = "X-API-Key"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.META.get("HTTP_X_API_KEY")

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        if not key:
            return None
        return _check_scope(ApiToken.objects.authenticate(key), self.scope)


def token_auth(scope: str) -> list:
    """`auth=` for an operation that needs a token with `scope`."""
    return [BearerToken(scope), ApiKeyToken(scope)]


class FullPrecisionEncoder(NinjaJSONEncoder):
    # DjangoJSONEncoder cuts timestamps to milliseconds; audit timestamps
    # must round-trip to the microsecond.
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class Renderer(JSONRenderer):
    encoder_class = FullPrecisionEncoder


def _in_the_error_shape(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A ninja URL view whose answers made before any operation runs (405,
    and 411 for a body Django cannot read) have the shared error shape."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.META.get("CONTENT_LENGTH"):
            # Under WSGI a body without a length reads as empty: the client
            # would be told it sent nothing.
            return api_error(
                411,
                "Send the body with a Content-Length header; "
                "chunked transfer encoding is not supported.",
                [{"field": "body", "message": "has no Content-Length"}],
            )
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = ", ".join(sorted(response["Allow"].split(", ")))
            return api_error(
                405,
                f"{request.method} is not allowed here; use {allowed}.",
                headers={"Allow": allowed},
            )
        return response

    return wrapper


class Api(NinjaAPI):
    @property
    def urls(self) -> tuple[list, str, str]:
        # ninja answers a method no operation takes with its own text/html
        # 405 (PathView), before any exception handler could see it.
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            pattern.callback = _in_the_error_shape(pattern.callback)
        return patterns, app_name, namespace


api = Api(
    renderer=Renderer(),
    title="sphere_stats API",
    version="1",
    description=(
        "Audit events in, statistics out. Authenticate with `Authorization: Bearer <token>` "
        "or `X-API-Key: <token>`; create a token with "
        "`python manage.py create_api_token NAME --scope ingest --scope read`. "
        "New client? Start with the [getting-started page](/api/v1/)."
    ),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return api_error(exc.status, exc.error, exc.details, exc.headers)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = []
    for err in exc.errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("query", "body", "path")]
        details.append({"field": ".".join(loc) or None, "message": err.get("msg", "invalid")})
    return api_error(400, "Invalid request parameters.", details)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api_error(
        401,
        "Missing or invalid API token: send 'Authorization: Bearer <token>' or 'X-API-Key'.",
        headers={"WWW-Authenticate": 'Bearer realm="sphere_stats"'},
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api_error(exc.status_code, str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api_error(404, str(exc) or "Not found.")


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def _database_down(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    return database_unavailable()
