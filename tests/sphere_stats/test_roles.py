"""The admin role and Django's admin stay in step; roles nest."""

from django.contrib.auth.models import Group, User

from sphere_stats.roles import Role, role_of


def test_adding_someone_to_the_admin_group_lets_them_into_the_django_admin(db, client):
    user = User.objects.create_user("carol", password="pw-carol")
    client.force_login(user)
    assert client.get("/admin/").status_code == 302
    user.groups.add(Group.objects.get(name="admin"))
    user.refresh_from_db()
    assert user.is_staff
    assert client.get("/admin/").status_code == 200
    for url in ("/admin/sphere_stats/apitoken/", "/admin/audit/event/", "/admin/auth/user/"):
        assert client.get(url).status_code == 200, url


def test_adding_from_the_group_side_works_too(db):
    user = User.objects.create_user("dave")
    Group.objects.get(name="admin").user_set.add(user)
    user.refresh_from_db()
    assert user.is_staff


def test_leaving_the_admin_group_takes_the_admin_away(db, client):
    user = User.objects.create_user("erin")
    admins = Group.objects.get(name="admin")
    user.groups.add(admins)
    user.groups.remove(admins)
    user.refresh_from_db()
    assert not user.is_staff
    assert role_of(user) == Role.NONE
    client.force_login(user)
    assert client.get("/admin/").status_code == 302


def test_clearing_the_admin_group_takes_the_admin_away_from_everyone_in_it(db):
    users = [User.objects.create_user(f"u{n}") for n in range(3)]
    admins = Group.objects.get(name="admin")
    admins.user_set.add(*users)
    admins.user_set.clear()
    assert not User.objects.filter(pk__in=[u.pk for u in users], is_staff=True).exists()


def test_a_superuser_stays_staff_when_leaving_the_group(db):
    user = User.objects.create_superuser("root", password="pw")
    admins = Group.objects.get(name="admin")
    user.groups.add(admins)
    user.groups.remove(admins)
    user.refresh_from_db()
    assert user.is_staff


def test_the_highest_group_is_the_role(db):
    user = User.objects.create_user("frank")
    user.groups.add(Group.objects.get(name="viewer"), Group.objects.get(name="analyst"))
    assert role_of(User.objects.get(pk=user.pk)) == Role.ANALYST


def test_a_deactivated_user_has_no_role(admin_user):
    admin_user.is_active = False
    admin_user.save()
    assert role_of(User.objects.get(pk=admin_user.pk)) == Role.NONE
