"""The demo's six facilities: where they are, how many hosts each has, how
busy their users keep them, and the incidents scripted over the history.

The history (demo.history) allocates hosts and has the controllers report
from this script; seed_facilities places the facilities on the map and
demo_reporter keeps reporting their present status (current_facility_state).
"""

from datetime import UTC, datetime, timedelta

# Demo facility slugs; `seed_facilities` places them on the map.
FACILITIES = ("isi", "utah", "wisc", "clemson", "mass", "tacc")
FACILITY_NODES = {"isi": 64, "utah": 96, "wisc": 48, "clemson": 40, "mass": 80, "tacc": 120}
# The share of each facility's hosts its users hold at most: past it, someone
# releases an experiment there before a new one is realized.
TARGET_USE = {"isi": 0.6, "utah": 0.45, "wisc": 0.55, "clemson": 0.5, "mass": 0.5, "tacc": 0.4}
# And at least, once reached: below it nobody frees a realization there, so a
# small facility does not drain to nothing by chance.
MIN_USE = 0.2
# Facility controllers report a change of status at once, a heartbeat while
# nothing changes, and every REPORT_EVERY_INCIDENT while not up. Heartbeats
# take about HEARTBEAT_SHARE of the events, at most one per controller every
# REPORT_EVERY_INCIDENT and at least one every HEARTBEAT_LONGEST (so every day
# of the uptime bar has a report). A controller posting every few minutes for
# a whole year would outnumber the portal's own events several times over.
HEARTBEAT_SHARE = 0.1
HEARTBEAT_LONGEST = timedelta(hours=20)
# Under the default FACILITY_STALE_AFTER (15 minutes): an incident reads as one
# unbroken run on the map, its uptime bar and the time charts' bands.
REPORT_EVERY_INCIDENT = timedelta(minutes=10)
# Each report says when the next will come (payload.interval, the time it
# holds on the map): the controller's period, up or not, with this much
# slack. Heartbeats are at most a tenth late (their jitter), so a quarter
# more covers every gap; an incident's reports hold 15 minutes.
INTERVAL_SLACK = 1.25
INCIDENT_INTERVAL = REPORT_EVERY_INCIDENT * 3 // 2
# Each facility's scripted incidents: (facility, how long before the end of
# the history it began, how long it lasted, status, message). The last three
# go on at the end of the history: the demo's present (current_facility_state).
INCIDENTS = (
    ("isi", timedelta(days=330), timedelta(hours=6), "maintenance", "annual power shutdown"),
    ("tacc", timedelta(days=250), timedelta(hours=14), "down", "chilled-water loop failure"),
    ("utah", timedelta(days=190), timedelta(hours=5), "degraded", "storage servers overloaded"),
    ("mass", timedelta(days=160), timedelta(hours=20), "maintenance", "electrical work"),
    ("clemson", timedelta(days=110), timedelta(hours=3), "down", "campus network outage"),
    ("wisc", timedelta(days=75), timedelta(hours=8), "maintenance", "node OS upgrade"),
    ("tacc", timedelta(days=45), timedelta(hours=2), "degraded", "parallel file system slow"),
    ("utah", timedelta(days=20, hours=8), timedelta(hours=8), "down", "core router outage"),
    (
        "isi",
        timedelta(days=14, hours=12),
        timedelta(hours=12),
        "maintenance",
        "scheduled OS upgrade",
    ),
    (
        "mass",
        timedelta(days=9, hours=4),
        timedelta(hours=4),
        "degraded",
        "cooling problem; half the nodes powered down",
    ),
    ("wisc", timedelta(hours=3), timedelta(hours=3), "down", "power failure in machine room B"),
    ("clemson", timedelta(hours=6), timedelta(hours=6), "maintenance", "switch firmware upgrade"),
    (
        "tacc",
        timedelta(hours=1),
        timedelta(hours=1),
        "degraded",
        "storage array rebuilding; experiments boot slowly",
    ),
)
# Password-spraying bursts: (when, as a share of the history; failed logins
# per thousand events, at least LOGIN_BURST_LEAST).

# Where each facility is, for the map; its capacity is FACILITY_NODES, the
# host names the history allocates (<slug>-n001 … <slug>-nNNN).
SITES = [
    {
        "slug": "isi",
        "name": "USC ISI",
        "latitude": 33.9802,
        "longitude": -118.4400,
        "kind": "compute",
        "description": "USC Information Sciences Institute, Marina del Rey, California.",
        "url": "https://www.isi.edu/",
    },
    {
        "slug": "utah",
        "name": "Utah",
        "latitude": 40.7649,
        "longitude": -111.8421,
        "kind": "compute",
        "description": "University of Utah, Salt Lake City.",
        "url": "https://www.utah.edu/",
    },
    {
        "slug": "wisc",
        "name": "Wisconsin",
        "latitude": 43.0766,
        "longitude": -89.4125,
        "kind": "compute",
        "description": "University of Wisconsin–Madison.",
        "url": "https://www.wisc.edu/",
    },
    {
        "slug": "clemson",
        "name": "Clemson",
        "latitude": 34.6834,
        "longitude": -82.8374,
        "kind": "compute",
        "description": "Clemson University, South Carolina.",
        "url": "https://www.clemson.edu/",
    },
    {
        "slug": "mass",
        "name": "Massachusetts (MGHPCC)",
        "latitude": 42.2036,
        "longitude": -72.6079,
        "kind": "datacenter",
        "description": "Massachusetts Green High Performance Computing Center, Holyoke; run with UMass Amherst.",
        "url": "https://www.mghpcc.org/",
    },
    {
        "slug": "tacc",
        "name": "TACC",
        "latitude": 30.3903,
        "longitude": -97.7262,
        "kind": "datacenter",
        "description": "Texas Advanced Computing Center, Austin.",
        "url": "https://www.tacc.utexas.edu/",
    },
]


def facility_state(slug: str, ts: datetime, end: datetime) -> tuple[str, str]:
    """The scripted status of a demo facility at ts (INCIDENTS): an outage at
    wisc now, a maintenance window at clemson now, tacc degraded, and a few
    past incidents over the year."""
    before_end = end - ts
    for facility, began, lasted, status, message in INCIDENTS:
        # One still going at the end includes the end itself.
        ongoing = lasted >= began
        if facility == slug and (began - lasted < before_end or ongoing) and before_end <= began:
            return status, message
    return "up", ""


def current_facility_state(slug: str) -> tuple[str, str]:
    """A demo facility's status at the end of the history, which the demo
    keeps as its present: wisc down, clemson in maintenance, tacc degraded,
    the others up."""
    end = datetime.now(UTC)
    return facility_state(slug, end, end)
