"""Keep the `admin` role and Django's admin in step.

Django's admin lets in `is_staff` users and shows them what their
permissions allow. A member of the `admin` group is made staff when added
(and no longer staff when removed, unless a superuser), and the group holds
every permission on this project's models and on users and groups, so that
adding someone to `admin` is all it takes.
"""

from django.contrib.auth.models import Group, Permission, User
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save
from django.dispatch import receiver

from sphere_stats.models import ApiToken, forget_tokens
from sphere_stats.roles import GROUP_NAMES

ADMIN_GROUP = "admin"
# Apps whose models the admin role manages in Django's admin.
ADMIN_APPS = (
    "sphere_stats",
    "audit",
    "dashboards",
    "facilities",
    "notify",
    "alerts",
    "streams",
    "auth",
)


def _sync_staff(user_ids, *, added: bool) -> None:
    users = User.objects.filter(pk__in=user_ids, is_superuser=False)
    if added:
        users.filter(groups__name=ADMIN_GROUP).update(is_staff=True)
    else:
        users.exclude(groups__name=ADMIN_GROUP).update(is_staff=False)


@receiver(m2m_changed, sender=User.groups.through)
def admin_group_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    if action not in ("post_add", "post_remove", "pre_clear", "post_clear"):
        return
    if reverse:  # group.user_set.add(...): instance is the group
        if instance.name != ADMIN_GROUP:
            return
        if action == "pre_clear":
            instance._cleared_users = list(instance.user_set.values_list("pk", flat=True))
            return
        users = pk_set if action != "post_clear" else getattr(instance, "_cleared_users", [])
    else:  # user.groups.add(...): instance is the user
        if action == "pre_clear":
            return
        users = [instance.pk]
    _sync_staff(users, added=action == "post_add")
    if not reverse:
        instance.is_staff = User.objects.filter(pk=instance.pk).values_list("is_staff", flat=True)[
            0
        ]


@receiver(post_migrate)
def ensure_role_groups(sender, using: str = "default", **kwargs) -> None:
    """The three role groups exist, and `admin` holds every permission of
    ADMIN_APPS. Runs after every migrate (permissions are created by
    post_migrate too, so new models are included) and after the test runner's
    flush of a transactional test, which empties the groups table."""
    groups = {name: Group.objects.using(using).get_or_create(name=name)[0] for name in GROUP_NAMES}
    permissions = Permission.objects.using(using).filter(content_type__app_label__in=ADMIN_APPS)
    groups[ADMIN_GROUP].permissions.add(*permissions)


@receiver([post_save, post_delete], sender=ApiToken)
def token_changed(sender, **kwargs) -> None:
    # A token edited in the admin (revoked_at set, scopes changed) must not
    # be trusted from this worker's cache for another few seconds.
    forget_tokens()
