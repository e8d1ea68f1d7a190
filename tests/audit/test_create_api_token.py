from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_prints_a_working_token_alone_on_the_last_line():
    out = StringIO()
    call_command("create_api_token", "portal", "--scope", "ingest", "--scope", "read", stdout=out)
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("sst_") and " " not in token
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/events").status_code == 200


def test_it_refuses_a_duplicate_name():
    call_command("create_api_token", "portal", "--scope", "read", stdout=StringIO())
    with pytest.raises(CommandError, match="exists"):
        call_command("create_api_token", "portal", "--scope", "read", stdout=StringIO())
