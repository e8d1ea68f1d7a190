"""Roles: viewer ⊂ analyst ⊂ admin, kept as Django groups of those names.

viewer  — stats pages, facility map, catalog
analyst — also the events explorer, entity timelines and exports
admin   — also the Django admin and API tokens (superusers are admins)
"""

from collections.abc import Callable
from enum import IntEnum
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class Role(IntEnum):
    NONE = 0
    VIEWER = 1
    ANALYST = 2
    ADMIN = 3


GROUP_NAMES = {"viewer": Role.VIEWER, "analyst": Role.ANALYST, "admin": Role.ADMIN}


def role_of(user) -> Role:
    """The highest role a user holds."""
    if not user.is_authenticated or not user.is_active:
        return Role.NONE
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_sphere_role", None)
    if cached is not None:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = max((GROUP_NAMES[n] for n in names if n in GROUP_NAMES), default=Role.NONE)
    if user.is_staff:
        role = max(role, Role.ADMIN)
    user._sphere_role = role
    return role


def has_role(user, role: Role) -> bool:
    return role_of(user) >= role


def role_required(role: Role, *, public: Callable[[], bool] | None = None):
    """Page decorator: anonymous users go to the login page, too-low roles get 403.

    `public`, when given and true at request time, lets in everyone below
    `role` (the optional public facility map): anonymous visitors and
    signed-in users without the role alike, so signing in never shows less
    than staying anonymous. The view must then show only what is public
    (check `has_role` itself).
    """

    def decorator(view):
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if public is not None and public() and not has_role(request.user, role):
                return view(request, *args, **kwargs)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                return render(
                    request,
                    "403.html",
                    {"needed": role.name.lower()},
                    status=403,
                )
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorator
