"""audit.catalog: what an event type means is an attribute of its entry, and
every set of types the aggregates, indexes and queries use derives from them."""

from audit import catalog
from audit.catalog import CATALOG, GONE, REMOVE_MEMBER, Lifecycle


def test_each_lifecycle_type_says_its_entity_kind_and_action():
    assert CATALOG["user_created"].lifecycle == Lifecycle("user", catalog.CREATE)
    assert CATALOG["org_frozen"].lifecycle == Lifecycle("organization", "frozen")
    assert CATALOG["realization_freed"].lifecycle == Lifecycle("realization", GONE)
    assert CATALOG["project_catalogued"].lifecycle.action == catalog.CATALOGUED
    assert CATALOG["user_login"].lifecycle is None
    assert CATALOG["experiment_pushed"].lifecycle is None


def test_lifecycle_types_are_those_of_one_kind_or_of_all():
    assert catalog.lifecycle_types("experiment") == (
        "experiment_created",
        "experiment_deleted",
        "experiment_catalogued",
    )
    assert catalog.lifecycle_types("materialization") == (
        "materialization_allocated",
        "materialization_freed",
    )
    assert set(catalog.LIFECYCLE_TYPES) == {
        name for kind in catalog.ENTITY_KINDS for name in catalog.lifecycle_types(kind)
    }
    assert "user_login" not in catalog.LIFECYCLE_TYPES


def test_membership_types_say_which_group_they_change():
    assert CATALOG["org_member_added"].membership_of == "organization"
    assert CATALOG["project_member_deleted"].membership_of == "project"
    assert CATALOG["org_created"].membership_of == ""
    assert catalog.membership_types("organization") == (
        "org_member_added",
        "org_member_updated",
        "org_member_deleted",
        "org_member_catalogued",
    )
    organization, project = (catalog.membership_types(g) for g in ("organization", "project"))
    assert organization + project == catalog.MEMBERSHIP_TYPES
    assert catalog.MEMBER_REMOVALS == ("org_member_deleted", "project_member_deleted")
    assert all(CATALOG[name].membership == REMOVE_MEMBER for name in catalog.MEMBER_REMOVALS)


def test_types_where_answers_any_question_of_the_entries_in_catalog_order():
    facility_reports = catalog.types_where(lambda t: t.subject_type == "facility")
    assert facility_reports == ("facility_status",)
    names = list(CATALOG)
    gone = catalog.types_where(lambda t: t.lifecycle is not None and t.lifecycle.action == GONE)
    assert list(gone) == sorted(gone, key=names.index)
    assert {"user_deleted", "org_declined", "realization_freed"} <= set(gone)
