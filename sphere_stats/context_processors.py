from django.conf import settings
from django.http import HttpRequest

from sphere_stats.roles import Role, role_of


def site(request: HttpRequest) -> dict:
    role = role_of(request.user) if hasattr(request, "user") else Role.NONE
    return {
        "role": role,
        "is_analyst": role >= Role.ANALYST,
        "is_admin": role >= Role.ADMIN,
        "embedded_database": settings.EMBEDDED_DATABASE,
    }
