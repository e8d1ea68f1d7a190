"""A facility's `url` is http or https, or empty: the panel renders it as a
link, where a `javascript:` URL would run in the page (issue 17).

A row saved before with another scheme (through the ORM, which skips the
field's validators) would make the constraint fail to build, so such URLs are
emptied first; the migration carries its own SQL, as it was on this day."""

import django.core.validators
from django.db import migrations, models

EMPTY_OTHER_SCHEMES = """
UPDATE facilities_facility SET url = ''
 WHERE url <> '' AND NOT (url ILIKE 'http://%' OR url ILIKE 'https://%')
"""


class Migration(migrations.Migration):
    dependencies = [
        ("facilities", "0003_facility_indexes"),
    ]

    operations = [
        migrations.RunSQL(EMPTY_OTHER_SCHEMES, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="facility",
            name="url",
            field=models.URLField(
                blank=True,
                validators=[django.core.validators.URLValidator(schemes=["http", "https"])],
            ),
        ),
        migrations.AddConstraint(
            model_name="facility",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("url", ""),
                    ("url__istartswith", "http://"),
                    ("url__istartswith", "https://"),
                    _connector="OR",
                ),
                name="facility_url_scheme",
            ),
        ),
    ]
