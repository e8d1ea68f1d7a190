"""login_users_weekly and login_users_monthly (audit.models.WeeklyLoginUser,
MonthlyLoginUser) gain each user's first and last successful login in the
UTC week or month: the active users of a local week or month that spans two
UTC ones (Asia/Kolkata's, New York's) are read from them rather than
deduplicated from its days (dashboards/stats/active_users.py).

The columns are added with placeholder values; the declarations' digests
changed, so audit.triggers.install, which runs after `migrate`, rebuilds
both tables from `events` and installs the triggers that keep the columns.
"""

import datetime

from django.db import migrations, models

PLACEHOLDER = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0034_login_users_weekly'),
    ]

    operations = [
        migrations.AddField(
            model_name=model,
            name=name,
            field=models.DateTimeField(default=PLACEHOLDER),
            preserve_default=False,
        )
        for model in ('weeklyloginuser', 'monthlyloginuser')
        for name in ('first_login', 'last_login')
    ]
