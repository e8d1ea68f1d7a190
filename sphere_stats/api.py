"""The JSON API: one NinjaAPI, one error shape, one token authentication.

Every error of every status is `{"error": "...", "details": [...]}`, built by
`api_error`; views raise `ApiError` and the handlers below turn exceptions
into that shape. The OpenAPI schema is generated from these declarations,
and is one that validators and client generators accept (`Api.get_openapi_schema`).

What every endpoint shares besides: JSON answers gzip-compressed for a
client that accepts it (`_compressed`), the answer's format picked by
`format=` or else the Accept header (`chosen_format`), and a `Link:
rel="next"` header beside a page's `next` URL (`link_next`).
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
from django.utils.cache import patch_vary_headers
from django.utils.text import compress_string
from ninja import NinjaAPI, Schema, Swagger
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import REF_TEMPLATE, OpenAPISchema
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder
from ninja.schema import NinjaGenerateJsonSchema
from ninja.security import APIKeyHeader, HttpBearer
from pydantic import BaseModel

from sphere_stats.models import ApiToken

RETRY_AFTER_SECONDS = 5
# JSON answers shorter than this go out as they are: below a kilobyte gzip
# saves a few hundred bytes at best (a one-event ingest answer is ~120).
GZIP_MIN_BYTES = 1024
# Random bytes in each gzip header (Django's GZipMiddleware's "Heal the
# Breach" padding): see _compressed.
GZIP_RANDOM_BYTES = 100


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


def _check_scope(token: ApiToken | None, scopes: tuple[str, ...]) -> ApiToken | None:
    if token is None:
        return None
    if not any(token.has_scope(scope) for scope in scopes):
        wanted = " or ".join(f"'{scope}'" for scope in scopes)
        raise ApiError(403, f"This token lacks the {wanted} scope.")
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
    def __init__(self, scopes: tuple[str, ...]) -> None:
        self.scopes = scopes
        super().__init__()

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        return _check_scope(ApiToken.objects.authenticate(token), self.scopes)


class ApiKeyToken(APIKeyHeader):
    param_name = "X-API-Key"

    def __init__(self, scopes: tuple[str, ...]) -> None:
        self.scopes = scopes
        super().__init__()

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.META.get("HTTP_X_API_KEY")

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        if not key:
            return None
        return _check_scope(ApiToken.objects.authenticate(key), self.scopes)


def token_auth(*scopes: str) -> list:
    """`auth=` for an operation that needs a token with one of `scopes`."""
    return [BearerToken(scopes), ApiKeyToken(scopes)]


def chosen_format(request: HttpRequest, offered: dict[str, str]) -> str:
    """The answer's format: the `format` query parameter when given (the
    operation's schema has checked it), else the one of `offered` (format:
    media type, the default first) that the Accept header prefers. A client
    that accepts none of them gets the default rather than a 406."""
    explicit = request.GET.get("format")
    if explicit:
        return explicit
    preferred = request.get_preferred_type(list(offered.values()))
    return next(
        (name for name, media in offered.items() if media == preferred), next(iter(offered))
    )


def varies_on_accept(response: HttpResponseBase) -> HttpResponseBase:
    """Tell caches the answer depends on the Accept header (see chosen_format)."""
    patch_vary_headers(response, ["Accept"])
    return response


def link_next(response: HttpResponseBase, url: str | None) -> HttpResponseBase:
    """A `Link: <url>; rel="next"` header (RFC 8288) beside a page's `next` URL."""
    if url:
        response["Link"] = f'<{url}>; rel="next"'
    return response


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an Accept-Encoding header allows gzip (and does not give it q=0)."""
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _compressed(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """A JSON answer gzip-compressed when the client accepts gzip and it is
    long enough to gain from it.

    Streamed answers (exports) are left alone: they compress themselves, and
    say so in Content-Encoding. BREACH recovers a secret from the length of
    compressed answers that also reflect the attacker's guesses; these JSON
    answers carry no secret (tokens travel in request headers and are never
    echoed, and no CSRF token is in them), only audit data that whoever can
    ask for it may read. The random padding Django's GZipMiddleware adds
    is kept anyway, for the stats a viewer's browser fetches with its
    session cookie.
    """
    if response.streaming or response.has_header("Content-Encoding"):
        return response
    if not response.get("Content-Type", "").startswith("application/json"):
        return response
    if len(response.content) < GZIP_MIN_BYTES:
        return response
    patch_vary_headers(response, ["Accept-Encoding"])
    if not accepts_gzip(request.META.get("HTTP_ACCEPT_ENCODING", "")):
        return response
    response.content = compress_string(response.content, max_random_bytes=GZIP_RANDOM_BYTES)
    response["Content-Length"] = str(len(response.content))
    response["Content-Encoding"] = "gzip"
    return response


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
    and 411 for a body Django cannot read) have the shared error shape, and
    whose JSON answers are compressed when the client accepts gzip."""

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
        return _compressed(request, response)

    return wrapper


def _examples_as_maps(schema: dict) -> None:
    """OpenAPI 3.1 wants a parameter's `examples` as a map of Example
    objects; ninja copies JSON Schema's list form there from the parameter's
    schema (where the list stays, as JSON Schema wants it)."""
    for path in schema["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", ()):
                examples = parameter.get("examples")
                if isinstance(examples, list):
                    parameter["examples"] = {
                        f"example{i + 1}" if i else "example": {"value": value}
                        for i, value in enumerate(examples)
                    }


class Api(NinjaAPI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._components: list[type[BaseModel]] = []

    def component(self, model: type[BaseModel]) -> type[BaseModel]:
        """Put `model` in the schema's components/schemas under its class
        name, for a `$ref` in an operation's openapi_extra (a request body
        the view reads itself, as ingest does). A decorator."""
        self._components.append(model)
        return model

    def get_openapi_operation_id(self, operation: Any) -> str:
        # The view's name (ingest_events, get_stat): what a generated client
        # calls its functions; ninja's default prefixes the module path.
        return operation.view_func.__name__

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        definitions = schema["components"].setdefault("schemas", {})
        for model in self._components:
            model_schema = model.model_json_schema(
                ref_template=REF_TEMPLATE, schema_generator=NinjaGenerateJsonSchema
            )
            definitions.update(model_schema.pop("$defs", {}))
            definitions[model.__name__] = model_schema
        _examples_as_maps(schema)
        return schema

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
    # Without deep links Swagger UI puts no link inside each operation's
    # button (axe: nested-interactive); templates/ninja/swagger.html frames
    # it as a page with a language, a main landmark and readable colours.
    docs=Swagger(settings={"deepLinking": False}),
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
