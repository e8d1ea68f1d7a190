"""login_users_daily (audit.models.DailyLoginUser) gains each user's first and
last quarter hour with a login in the UTC day: the active users of a local
day cut inside a UTC day (Asia/Kolkata's begins at 18:30 UTC) read them
instead of the day's hourly rows (dashboards/stats/active_users.py).

The columns are added with placeholder values; the declaration's digest
changed, so audit.triggers.install, which runs after `migrate`, rebuilds
the table from `events` and installs the triggers that keep the columns.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0030_entity_changes_daily'),
    ]

    operations = [
        migrations.AddField(
            model_name='dailyloginuser',
            name='first_quarter',
            field=models.SmallIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='dailyloginuser',
            name='last_quarter',
            field=models.SmallIntegerField(default=95),
            preserve_default=False,
        ),
    ]
