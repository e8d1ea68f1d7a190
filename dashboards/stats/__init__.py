"""The stats: the registry (dashboards.stats.registry) and one module per
family of stats, each holding its stats and the SQL they run:

- counts: entities existing now and their growth per bucket;
- activity: events per bucket and type, logins, failures by type, the
  period against the previous one;
- active_users: daily, weekly and monthly active users;
- top: the top-N tables;
- entity: one user's, organization's, project's or experiment's page.

Importing the package registers every stat.
"""

from dashboards.charts import explorer_bound

# In the order the stats list: the overview's, the top-N tables, an entity's.
from dashboards.stats import counts  # isort: skip
from dashboards.stats import activity  # isort: skip
from dashboards.stats import active_users  # isort: skip
from dashboards.stats import top  # isort: skip
from dashboards.stats import entity  # isort: skip
from dashboards.stats.registry import (
    NO_OPTIONS,
    SOURCES,
    STATS,
    ChartOptions,
    Column,
    Param,
    Result,
    Stat,
    StatError,
    first_event_time,
    get,
    register,
    serialize_rows,
    to_csv,
)

__all__ = [
    "NO_OPTIONS",
    "SOURCES",
    "STATS",
    "ChartOptions",
    "Column",
    "Param",
    "Result",
    "Stat",
    "StatError",
    "active_users",
    "activity",
    "counts",
    "entity",
    "explorer_bound",
    "first_event_time",
    "get",
    "register",
    "serialize_rows",
    "to_csv",
    "top",
]
