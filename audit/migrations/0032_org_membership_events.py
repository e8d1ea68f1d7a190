"""org_membership_events (audit.models.OrgMembershipEvent): each successful
membership event of an organization, read index-only by organizations by
members over a window that ends in the past (dashboards/stats/org_members.py).

The table is created empty; its declaration is new, so audit.triggers.install,
which runs after `migrate`, fills it from `events` and installs the triggers
that keep it.
"""


from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0031_login_users_daily_quarters'),
    ]

    operations = [
        migrations.CreateModel(
            name='OrgMembershipEvent',
            fields=[
                ('event_uuid', models.UUIDField(primary_key=True, serialize=False)),
                ('at', models.DateTimeField()),
                ('org', models.TextField()),
                ('kind', models.TextField(null=True)),
                ('member', models.TextField(null=True)),
                ('n', models.BigIntegerField()),
                ('removals', models.BigIntegerField()),
            ],
            options={
                'db_table': 'org_membership_events',
                'constraints': [models.UniqueConstraint(fields=('org', 'kind', 'member', 'at', 'event_uuid'), include=('removals',), name='org_membership_events_key', nulls_distinct=False)],
            },
        ),
    ]
