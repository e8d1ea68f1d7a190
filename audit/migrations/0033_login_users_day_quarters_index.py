"""login_users_daily gains a covering index of each UTC day's users with
their first and last quarter hour: the active users of a local day cut
inside two UTC days (Asia/Kolkata's) read them from the index alone
(dashboards/stats/active_users.py). The table is small (44,500 rows at 10M
events), so the index is built in place.
"""


from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0032_org_membership_events'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='dailyloginuser',
            index=models.Index(fields=['day', 'username'], include=('first_quarter', 'last_quarter'), name='idx_login_users_day_quarters'),
        ),
    ]
