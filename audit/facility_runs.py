"""facility_runs: the facility status reports folded into runs, a
pre-aggregate of `events` kept by the triggers on it (audit/aggregates.py).

A run is a maximal stretch of one facility's reports, in (timestamp,
event_uuid) order, of one status, each report arriving within the hold time
of the one before it (facilities/status.py): a different status or a
silence longer than the previous report's hold starts a new run. A run
stores its first report (started, first_uuid, message, caller, interval),
its last (last_report, last_uuid, hold_until: when the last report's hold
ends) and `ended`: the next run's start if that comes before hold_until,
else hold_until. The run then covers exactly [started, ended) with its
status, and the time between `ended` and the next run's start is unknown:
segments, bands, changes and "since" are computed from runs alone and equal
what the reports give.

How long a report holds depends on FACILITY_STALE_AFTER, so the runs do
too: the hold is computed with the value written into the trigger function
(`FacilityRuns.stale`), which is part of the declaration's digest. A changed
setting is a changed declaration, and the next `migrate` rebuilds the runs
with it; until then readers see that the runs were built with another value
(`runs_current`) and read the reports, as before.

This module imports no models: audit/aggregates.py declares the table from
it while the apps load.
"""

from dataclasses import dataclass
from functools import lru_cache

from audit.catalog import FACILITY_MAX_INTERVAL

STATUS_EVENT = "facility_status"
RUNS_TABLE = "facility_runs"
# pg_advisory_xact_lock(RUNS_LOCK, hashtext(facility)): one facility's runs
# are refolded by one transaction at a time, each reading the committed
# reports of the one before it.
RUNS_LOCK = 7_400_043


def interval_sql(payload: str) -> str:
    """SQL for a report's payload.interval in whole seconds, from the JSON
    column `payload`; NULL where it is missing or not what the catalog
    accepts (a report stored before the catalog checked it, or imported
    unchecked), so such a report holds FACILITY_STALE_AFTER, as one without
    an interval. The nested CASE keeps the casts away from other values."""
    value = f"({payload}->>'interval')::numeric"
    return (
        f"CASE WHEN jsonb_typeof({payload}->'interval') = 'number' THEN "
        f"CASE WHEN {value} BETWEEN 1 AND {FACILITY_MAX_INTERVAL} AND mod({value}, 1) = 0 "
        f"THEN {value}::int END END"
    )


def hold_sql(interval: str, stale: str = "%(stale)s") -> str:
    """SQL for how long a report holds (status.Report.holds_for): its
    interval in seconds (`interval`, NULL for none), never less than the
    parameter `stale` (FACILITY_STALE_AFTER); greatest() skips the NULL."""
    return f"greatest({stale}, make_interval(secs => {interval}))"


RUN_COLUMNS = (
    "facility, started, first_uuid, status, message, caller, interval_secs, "
    "last_report, last_uuid, hold_until, ended"
)
# Facility status reports among `events` (alias e); written into the SQL so
# that the planner matches idx_events_facility_reports.
_IS_REPORT = f"e.subject_type = 'facility' AND e.event_type = '{STATUS_EVENT}'"


def _reports(stale: str, where: str = "TRUE") -> str:
    """The fold's input rows for the reports matching `where`: each report
    as a run of its own (first = last = itself)."""
    return (
        "SELECT e.subject AS facility, e.timestamp AS ts, e.event_uuid AS id, "
        "coalesce(e.payload->>'status', '') AS status, "
        f"e.timestamp + {hold_sql(interval_sql('e.payload'), stale)} AS until, "
        "e.timestamp AS first_ts, e.event_uuid AS first_id, "
        "coalesce(e.payload->>'message', '') AS message, e.caller, "
        f"{interval_sql('e.payload')} AS interval_secs "
        f"FROM events AS e WHERE {_IS_REPORT} AND ({where})"
    )


# The fold of relation `reports` (facility, ts, id, status, until, first_ts,
# first_id, message, caller, interval_secs), ending in `runs` (RUN_COLUMNS). A
# row is a report, or a run already folded standing for its last report
# (the seed a refold continues from; its first_* are the run's). A row
# starts a run unless it follows one of its status within that one's hold.
_FOLD = """
marked AS (
    SELECT r.*, (lag(r.until) OVER w IS NULL OR r.status <> lag(r.status) OVER w
                 OR r.ts > lag(r.until) OVER w) AS starts
    FROM reports AS r WINDOW w AS (PARTITION BY r.facility ORDER BY r.ts, r.id)
),
numbered AS (
    SELECT m.*, count(*) FILTER (WHERE m.starts) OVER w AS run,
           lead(m.starts) OVER w IS NOT FALSE AS is_last
    FROM marked AS m WINDOW w AS (PARTITION BY m.facility ORDER BY m.ts, m.id)
),
grouped AS (
    SELECT facility, run, max(first_ts) FILTER (WHERE starts) AS started,
           (array_agg(first_id) FILTER (WHERE starts))[1] AS first_uuid, min(status) AS status,
           (array_agg(message) FILTER (WHERE starts))[1] AS message,
           (array_agg(caller) FILTER (WHERE starts))[1] AS caller,
           (array_agg(interval_secs) FILTER (WHERE starts))[1] AS interval_secs,
           max(ts) FILTER (WHERE is_last) AS last_report,
           (array_agg(id) FILTER (WHERE is_last))[1] AS last_uuid,
           max(until) FILTER (WHERE is_last) AS hold_until
    FROM numbered GROUP BY facility, run
),
runs AS (
    -- least() skips the NULL of the last run: it ends when its hold does.
    SELECT facility, started, first_uuid, status, message, caller, interval_secs, last_report,
           last_uuid, hold_until,
           least(lead(started) OVER (PARTITION BY facility ORDER BY run), hold_until) AS ended
    FROM grouped
)
"""


# In sphere_stats_facility_runs: after a delete that left no report of the
# facility before its last deleted key, a prefix went (a prune). The first
# report left starts a run, the one it was in; every later run stays as it was.
_PRUNED = f"""
        IF NOT EXISTS (
            SELECT 1 FROM events AS e WHERE {_IS_REPORT} AND e.subject = v_f
              AND e.timestamp <= v_t2 AND (e.timestamp < v_t2 OR e.event_uuid < v_u2)) THEN
            SELECT e.timestamp AS ts, e.event_uuid AS id, coalesce(e.payload->>'message', '')
                   AS message, e.caller, {interval_sql("e.payload")} AS secs INTO v_q
            FROM events AS e WHERE {_IS_REPORT} AND e.subject = v_f
            ORDER BY e.timestamp, e.event_uuid LIMIT 1;
            DELETE FROM facility_runs AS x WHERE x.facility = v_f
              AND (v_q.ts IS NULL OR (x.last_report, x.last_uuid) < (v_q.ts, v_q.id));
            UPDATE facility_runs AS x SET started = v_q.ts, first_uuid = v_q.id,
                   message = v_q.message, caller = v_q.caller, interval_secs = v_q.secs
            WHERE x.facility = v_f AND (x.started, x.first_uuid) < (v_q.ts, v_q.id);
            CONTINUE;
        END IF;
"""


# The run in force at (v_t, v_u): the last that started before it.
_IN_FORCE = """SELECT * INTO v_r FROM facility_runs AS x WHERE x.facility = v_f
          AND (x.started, x.first_uuid) < (v_t, v_u)
        ORDER BY x.started DESC, x.first_uuid DESC LIMIT 1"""


def _one_report(stale: str) -> str:
    """In sphere_stats_facility_runs: one inserted report x = (v_t, v_u) of
    the facility, the usual write, placed without the fold where it can be.

    After the last run's last report, x continues that run (same status,
    within its hold) or closes it and starts one, as the fold would.

    Strictly inside a run, between two of its reports p and n (n followed p:
    same status, n.ts <= p's hold end), with the run's status: x follows p
    (x.ts <= n.ts <= p's hold end), and when n.ts <= x's own hold end, n
    follows x; no other report has a new predecessor, so the run, its
    bounds and every other run stay as they are. A shorter hold of x than
    p's (a smaller interval) can split the run: then, or with another
    status, it is refolded.

    Both hold whether the runs are those of the reports without x (an
    INSERT) or with it already (the second half of an UPDATE, after the
    first refolded); anything else falls through to the refold."""
    key = "x.facility = v_f AND x.started = v_r.started AND x.first_uuid = v_r.first_uuid"
    return f"""
        SELECT * INTO v_x FROM ({_reports(stale, "e.event_uuid = v_u")}) AS r;
        SELECT * INTO v_r FROM facility_runs AS x WHERE x.facility = v_f
        ORDER BY x.started DESC, x.first_uuid DESC LIMIT 1;
        IF v_x.id IS NOT NULL AND (v_r.last_report, v_r.last_uuid) < (v_t, v_u) THEN
            IF v_x.status = v_r.status AND v_t <= v_r.hold_until THEN
                UPDATE facility_runs AS x SET last_report = v_t, last_uuid = v_u,
                       hold_until = v_x.until, ended = v_x.until WHERE {key};
            ELSE
                UPDATE facility_runs AS x SET ended = least(v_t, v_r.hold_until) WHERE {key};
                INSERT INTO facility_runs ({RUN_COLUMNS}) VALUES (v_f, v_t, v_u, v_x.status,
                    v_x.message, v_x.caller, v_x.interval_secs, v_t, v_u, v_x.until, v_x.until);
            END IF;
            CONTINUE;
        END IF;
        IF NOT (v_r.started, v_r.first_uuid) < (v_t, v_u) THEN
            {_IN_FORCE};
        END IF;
        IF v_x.status = v_r.status AND (v_t, v_u) < (v_r.last_report, v_r.last_uuid) AND (
            SELECT e.timestamp FROM events AS e WHERE {_IS_REPORT} AND e.subject = v_f
              AND (e.timestamp, e.event_uuid) > (v_t, v_u)
            ORDER BY e.timestamp, e.event_uuid LIMIT 1) <= v_x.until THEN
            CONTINUE;
        END IF;
"""


def refold_function(stale_seconds: int) -> str:
    """The function the triggers call with, per facility, the first and last
    (timestamp, event_uuid) a statement inserted or deleted. It refolds the
    facility's runs from the run in force at the first key: one inserted
    report is placed without a fold where it can be (_one_report), appended
    reports continue the last run (only they are read), a pruned prefix
    shortens the first remaining run, anything else refolds from that run's
    first report."""
    stale = f"interval '{int(stale_seconds)} seconds'"
    # The run continued (v_r) standing for its last report, as a fold row.
    seed = (
        "SELECT v_f AS facility, v_r.last_report AS ts, v_r.last_uuid AS id, v_r.status, "
        "v_r.hold_until AS until, v_r.started AS first_ts, v_r.first_uuid AS first_id, "
        "v_r.message, v_r.caller, v_r.interval_secs WHERE v_seeded"
    )
    after = (
        "e.subject = v_f AND e.timestamp >= v_lo_ts AND (e.timestamp > v_lo_ts "
        "OR e.event_uuid > v_lo_id OR (NOT v_seeded AND e.event_uuid = v_lo_id))"
    )
    return f"""
CREATE OR REPLACE FUNCTION sphere_stats_facility_runs(p_facilities text[],
    p_lo_ts timestamptz[], p_lo_ids uuid[], p_hi_ts timestamptz[], p_hi_ids uuid[],
    p_deleting boolean)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
-- Index probes whatever the statistics of a table filled moments ago say,
-- and one plan for every call (see sphere_stats_refresh_entities).
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE v_f text; v_t timestamptz; v_u uuid; v_t2 timestamptz; v_u2 uuid;
    v_r facility_runs%ROWTYPE; v_q record; v_x record; v_seeded boolean;
    v_lo_ts timestamptz; v_lo_id uuid;
BEGIN
    -- Sorted, so that two statements lock in the same order and never wait
    -- for each other; each is locked before any of its runs is read.
    FOR v_f, v_t, v_u, v_t2, v_u2 IN SELECT * FROM unnest(p_facilities, p_lo_ts, p_lo_ids,
            p_hi_ts, p_hi_ids) AS u (f) ORDER BY hashtext(u.f), u.f LOOP
        PERFORM pg_advisory_xact_lock({RUNS_LOCK}, hashtext(v_f));
        IF p_deleting THEN{_PRUNED}        ELSIF v_u = v_u2 THEN{_one_report(stale)}        END IF;
        {_IN_FORCE};
        -- Every new or deleted key after the run's last report: the run
        -- goes on from its last report, and only the reports after it are read.
        v_seeded := FOUND AND (v_r.last_report, v_r.last_uuid) < (v_t, v_u);
        v_lo_ts := CASE WHEN v_r.started IS NULL THEN '-infinity'
                        WHEN v_seeded THEN v_r.last_report ELSE v_r.started END;
        v_lo_id := CASE WHEN v_seeded THEN v_r.last_uuid ELSE v_r.first_uuid END;
        DELETE FROM facility_runs AS x WHERE x.facility = v_f
          AND (v_r.started IS NULL OR (x.started, x.first_uuid) >= (v_r.started, v_r.first_uuid));
        WITH reports AS ({_reports(stale, after)} UNION ALL {seed}), {_FOLD}
        INSERT INTO facility_runs ({RUN_COLUMNS}) SELECT {RUN_COLUMNS} FROM runs;
    END LOOP;
END
$fn$;
-- It runs as its owner: only the triggers (which run as the owner too) call it.
REVOKE EXECUTE ON FUNCTION sphere_stats_facility_runs(text[], timestamptz[], uuid[],
    timestamptz[], uuid[], boolean) FROM PUBLIC;
"""


@dataclass(frozen=True)
class FacilityRuns:
    """The facility_runs declaration: its trigger statements, rebuild and
    comparison with `events`. `stale` (seconds) is FACILITY_STALE_AFTER as
    the runs are built with it; it is in `definition`, so a changed setting
    rebuilds them at the next migrate."""

    table: str
    stale: int

    @property
    def name(self) -> str:
        return self.table

    @property
    def function_sql(self) -> str:
        return refold_function(self.stale)

    @property
    def definition(self) -> str:
        return f"{self!r}\n{self.function_sql}"

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        """One statement: the refold of every facility a report of `rows`
        is about, from the first of them (inserted or deleted alike). A
        statement without a report (most of them) only probes `rows`."""
        return [
            f"IF EXISTS (SELECT FROM {rows} AS e WHERE {_IS_REPORT}) THEN "
            "PERFORM sphere_stats_facility_runs(array_agg(facility), array_agg(lo_ts), "
            f"array_agg(lo_id), array_agg(hi_ts), array_agg(hi_id), {'true' if sign < 0 else 'false'}) "
            "FROM (SELECT e.subject AS facility, "
            "(array_agg(e.timestamp ORDER BY e.timestamp, e.event_uuid))[1] AS lo_ts, "
            "(array_agg(e.event_uuid ORDER BY e.timestamp, e.event_uuid))[1] AS lo_id, "
            "(array_agg(e.timestamp ORDER BY e.timestamp DESC, e.event_uuid DESC))[1] AS hi_ts, "
            "(array_agg(e.event_uuid ORDER BY e.timestamp DESC, e.event_uuid DESC))[1] AS hi_id "
            f"FROM {rows} AS e WHERE {_IS_REPORT} GROUP BY e.subject) AS touched; END IF"
        ]

    def _computed(self) -> str:
        stale = f"interval '{int(self.stale)} seconds'"
        return f"WITH reports AS ({_reports(stale)}), {_FOLD} SELECT {RUN_COLUMNS} FROM runs"

    def rebuild(self, cursor) -> None:
        """Every run folded again from the reports (the caller holds `events`)."""
        cursor.execute(f"DELETE FROM {self.table}")
        cursor.execute(f"INSERT INTO {self.table} ({RUN_COLUMNS}) {self._computed()}")

    def differences(self, cursor) -> list[str]:
        """Each run where the table and the reports disagree, as a sentence."""
        values = [c.strip() for c in RUN_COLUMNS.split(",")][3:]
        stored = ", ".join(f"s.{c}" for c in values)
        computed = ", ".join(f"r.{c}" for c in values)
        cursor.execute(
            "SELECT coalesce(s.facility, r.facility), coalesce(s.started, r.started), "
            f"s.facility IS NULL, r.facility IS NULL, {stored}, {computed} "
            f"FROM {self.table} AS s FULL JOIN ({self._computed()}) AS r "
            "ON s.facility = r.facility AND s.started = r.started AND s.first_uuid = r.first_uuid "
            f"WHERE ({stored}) IS DISTINCT FROM ({computed}) ORDER BY 1, 2 LIMIT 1000"
        )
        found = []
        for facility, started, missing, extra, *rest in cursor.fetchall():
            where = f"{self.table} ({facility}, {started:%Y-%m-%d %H:%M:%S.%f})"
            if missing or extra:
                found.append(f"{where}: {'missing' if missing else 'not in events'}")
                continue
            have, want = rest[: len(values)], rest[len(values) :]
            wrong = {c: (a, b) for c, a, b in zip(values, have, want, strict=True) if a != b}
            found.append(f"{where}: stored/events {wrong}")
        return found


@lru_cache
def _digest(stale_seconds: int) -> str:
    from audit.triggers import digest

    return digest(FacilityRuns(RUNS_TABLE, stale=stale_seconds).definition)


def runs_current(cursor, stale_seconds: int) -> bool:
    """Whether facility_runs hold the runs of this FACILITY_STALE_AFTER: its
    declaration with that value is the one last built (aggregate_definitions).
    Not after the setting changed and before the next migrate rebuilt them;
    readers then fold the reports themselves."""
    cursor.execute(
        "SELECT digest FROM aggregate_definitions WHERE name = %(name)s", {"name": RUNS_TABLE}
    )
    row = cursor.fetchone()
    return row is not None and row[0] == _digest(stale_seconds)
