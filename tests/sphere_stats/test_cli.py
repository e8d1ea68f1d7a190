"""sphere_stats.cli: argument types of the management commands."""

from argparse import ArgumentTypeError

import pytest
from django.core.management import CommandError, call_command

from sphere_stats.cli import positive_int


def test_positive_int_takes_whole_numbers_of_at_least_one():
    assert positive_int("1") == 1
    assert positive_int("10000") == 10000


@pytest.mark.parametrize(
    ("text", "message"), [("0", "at least 1"), ("-3", "at least 1"), ("lots", "whole number")]
)
def test_positive_int_refuses_anything_else_saying_why(text, message):
    with pytest.raises(ArgumentTypeError, match=message):
        positive_int(text)


@pytest.mark.django_db
def test_import_events_refuses_a_batch_of_zero(tmp_path):
    path = tmp_path / "empty.ndjson"
    path.write_text("")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("import_events", str(path), "--batch", "0")
