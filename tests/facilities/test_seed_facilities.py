"""manage.py seed_facilities."""

from io import StringIO

import pytest
from django.core.management import call_command

from demo.sites import FACILITIES
from facilities.models import Facility

pytestmark = pytest.mark.django_db


def test_it_creates_the_six_demo_facilities_on_the_map():
    out = StringIO()
    call_command("seed_facilities", stdout=out)
    assert set(Facility.objects.values_list("slug", flat=True)) == set(FACILITIES)
    isi = Facility.objects.get(slug="isi")
    assert (round(isi.latitude), round(isi.longitude)) == (34, -118)
    for f in Facility.objects.all():
        f.full_clean()
        assert f.capacity_nodes > 0
    assert "created isi" in out.getvalue()


def test_running_it_twice_updates_in_place():
    call_command("seed_facilities", stdout=StringIO())
    out = StringIO()
    call_command("seed_facilities", stdout=out)
    assert Facility.objects.count() == 6
    assert "updated tacc" in out.getvalue()


def test_a_dry_run_writes_nothing():
    out = StringIO()
    call_command("seed_facilities", "--dry-run", stdout=out)
    assert not Facility.objects.exists()
    assert "would create wisc" in out.getvalue()


def test_seed_demo_places_the_facilities_its_history_uses():
    call_command("seed_demo", "--events", "500", "--days", "10", stdout=StringIO(), verbosity=0)
    assert set(Facility.objects.values_list("slug", flat=True)) == set(FACILITIES)
    assert Facility.objects.get(slug="wisc").capacity_nodes == 48
