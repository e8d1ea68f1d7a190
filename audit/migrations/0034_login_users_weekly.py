"""login_users_weekly (audit.models.WeeklyLoginUser): successful logins per
UTC week and user, which the weekly active users of a window shown in UTC
count for its whole weeks (dashboards/stats/active_users.py).

The table is created empty; its declaration is new, so audit.triggers.install,
which runs after `migrate`, fills it from `events` and installs the triggers
that keep it.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0033_login_users_day_quarters_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='WeeklyLoginUser',
            fields=[
                ('pk', models.CompositePrimaryKey('week', 'username', blank=True, editable=False, primary_key=True, serialize=False)),
                ('week', models.DateTimeField()),
                ('username', models.TextField()),
                ('n', models.BigIntegerField()),
            ],
            options={
                'db_table': 'login_users_weekly',
            },
        ),
    ]
