"""The kinds of table a pre-aggregate declaration (audit/aggregates.py) can be,
and how each is kept: the statements its triggers run for the rows a
statement inserted or deleted, its rebuild, and its comparison with
`events` (verify_aggregates).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta


def sql_literals(names) -> str:
    """A SQL list of literals: catalog names and states are slugs."""
    return ", ".join(f"'{name}'" for name in names)


class TableDeclaration:
    """A pre-aggregate stored in one table, declared by its dataclass fields:
    its name is the table's, and its definition (whose digest says when to
    rebuild it) is the declaration itself."""

    table: str
    nullable: tuple[str, ...]  # the key columns that may be NULL (_equal)

    @property
    def name(self) -> str:
        return self.table

    @property
    def definition(self) -> str:
        return repr(self)

    def _equal(self, column: str, left: str, right: str) -> str:
        """`left` equal to `right` as key `column`: a NULL is one key, as
        DISTINCT ON and the ON CONFLICT targets take it, in the columns the
        declaration says may be NULL (`nullable`); the others compare with
        `=`, which an index can answer."""
        same = "IS NOT DISTINCT FROM" if column in self.nullable else "="
        return f"{left} {same} {right}"


# The units of one length in UTC, and the origin of their bins (a Monday's midnight).
_FIXED_UNITS = {"hour": "interval '1 hour'", "day": "interval '1 day'", "week": "interval '7 days'"}
_MONDAY_UTC = "timestamptz '2000-01-03 00:00:00+00'"


def utc_bin(unit: str, column: str = "timestamp") -> str:
    """SQL: the start of the UTC hour, day or week (from Monday) that the
    timestamptz `column` falls in, without a time zone (CountTable._bucket)."""
    return f"date_bin({_FIXED_UNITS[unit]}, {column}, {_MONDAY_UTC})"


@dataclass(frozen=True)
class CountTable(TableDeclaration):
    """Rows of `events` matching `only`, counted per UTC `unit` (hour, day
    or month, in column `time`) and `keys`. Each key and count is (its
    column, its SQL over an events row). The first count is count(*): a
    group whose first count falls to 0 has no rows left and its row is
    deleted.

    Each bound is (its column, "min" or "max", its SQL over an events row):
    the least or greatest value in the group. An insert widens it; a delete
    cannot narrow it from the deleted rows alone, so the groups a delete
    touched and that keep rows have theirs recomputed from `events`."""

    table: str
    time: str
    unit: str
    keys: tuple[tuple[str, str], ...]
    counts: tuple[tuple[str, str], ...] = (("n", "count(*)"),)
    only: str = "TRUE"
    # Out of repr() unless given (`definition`): the tables without bounds
    # keep the digest they were built under, and are not rebuilt for them.
    bounds: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)
    # The key columns that may be NULL, one key each: matched by IS NOT
    # DISTINCT FROM, where the others compare with `=`, which an index
    # answers. Out of repr() as well: a NULL is never counted apart by the
    # ON CONFLICT target, only found again by the delete and the comparison.
    nullable: tuple[str, ...] = field(default=(), repr=False)

    @property
    def definition(self) -> str:
        return (
            repr(self)
            + (f" bounds={self.bounds!r}" if self.bounds else "")
            + (f" nullable={self.nullable!r}" if self.nullable else "")
        )

    def _bound_sql(self) -> list[str]:
        return [f"{extreme}({sql})" for _, extreme, sql in self.bounds]

    @property
    def _bucket(self) -> str:
        """SQL: the UTC `unit` an events row falls in, its `time` value.

        `date_trunc(unit, timestamp, 'UTC')` looks the zone up on every
        call: 0.2 us a row, which the insert trigger paid once per table for
        each row it counts (measured over 1M rows: 265-278 ms against 58-62
        for date_bin). An hour, a day and a week (from Monday) have fixed
        lengths in UTC, so `date_bin` from a Monday's midnight finds the same
        start without a zone; a month does not, and a microsecond is the
        timestamp itself."""
        if self.unit in _FIXED_UNITS:
            return utc_bin(self.unit)
        if self.unit == "microseconds":
            return "timestamp"
        return f"date_trunc('{self.unit}', timestamp, 'UTC')"

    def _grouped(self, rows: str, sign: int = 1, where: str = "TRUE") -> str:
        select = ", ".join(
            [self._bucket]
            + [sql for _, sql in self.keys]
            + [f"{sign} * {sql}" if sign != 1 else sql for _, sql in self.counts]
            + self._bound_sql()
        )
        groups = ", ".join(str(i) for i in range(1, len(self.keys) + 2))
        # Sorted so that concurrent statements lock the rows in one order.
        return (
            f"SELECT {select} FROM {rows} WHERE ({self.only}) AND ({where}) "
            f"GROUP BY {groups} ORDER BY {groups}"
        )

    def _values(self) -> list[str]:
        """The columns compared with `events`: the counts, then the bounds."""
        return [*(c for c, _ in self.counts), *(c for c, _, _ in self.bounds)]

    def _columns(self) -> str:
        return ", ".join([self.time, *(c for c, _ in self.keys), *self._values()])

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        """The trigger's statements: add (sign 1) or take back (-1) `rows`."""
        key_columns = ", ".join([self.time, *(c for c, _ in self.keys)])
        added = ", ".join(
            [f"{c} = t.{c} + excluded.{c}" for c, _ in self.counts]
            + [
                f"{c} = {'least' if extreme == 'min' else 'greatest'}(t.{c}, excluded.{c})"
                for c, extreme, _ in self.bounds
                if sign > 0
            ]
        )
        statements = [
            f"INSERT INTO {self.table} AS t ({self._columns()}) {self._grouped(rows, sign)} "
            f"ON CONFLICT ({key_columns}) DO UPDATE SET {added}"
        ]
        if sign < 0:
            keys = ", ".join(
                [f"{self._bucket} AS k0"]
                + [f"{sql} AS k{i}" for i, (_, sql) in enumerate(self.keys, start=1)]
            )
            same = " AND ".join(
                [f"t.{self.time} = g.k0"]
                + [self._equal(c, f"t.{c}", f"g.k{i}") for i, (c, _) in enumerate(self.keys, 1)]
            )
            statements.append(
                f"DELETE FROM {self.table} AS t USING (SELECT DISTINCT {keys} FROM {rows} "
                f"WHERE ({self.only})) AS g WHERE {same} AND t.{self.counts[0][0]} = 0"
            )
            if self.bounds:
                statements.append(self._narrowed(rows, keys, same))
        return statements

    def _narrowed(self, rows: str, keys: str, same: str) -> str:
        """The bounds of the groups that lost rows and kept some, from `events`
        (each group one range of its unit, which the `only` rows' index reads)."""
        columns = ", ".join(c for c, _, _ in self.bounds)
        end = f"(t.{self.time} AT TIME ZONE 'UTC' + interval '1 {self.unit}') AT TIME ZONE 'UTC'"
        group = " AND ".join(
            [f"timestamp >= t.{self.time}", f"timestamp < {end}"]
            + [f"{sql} = t.{c}" for c, sql in self.keys]
        )
        return (
            f"UPDATE {self.table} AS t SET ({columns}) = (SELECT {', '.join(self._bound_sql())} "
            f"FROM events WHERE ({self.only}) AND {group}) "
            f"FROM (SELECT DISTINCT {keys} FROM {rows} WHERE ({self.only})) AS g WHERE {same}"
        )

    def _range(self) -> tuple[str, str]:
        # Whole units: from the one `start` falls in to the end of the one
        # `end` falls in (an `end` on a unit's boundary ends its predecessor).
        # The unit is added in UTC wall time: a month (or a day) added to a
        # timestamptz in the session's zone would end at a local midnight.
        lo = f"coalesce(date_trunc('{self.unit}', %(start)s::timestamptz, 'UTC'), '-infinity')"
        hi = (
            f"coalesce((date_trunc('{self.unit}', %(end)s::timestamptz - interval '1 microsecond',"
            f" 'UTC') AT TIME ZONE 'UTC' + interval '1 {self.unit}') AT TIME ZONE 'UTC',"
            " 'infinity')"
        )
        return lo, hi

    def rebuild(self, cursor, start: datetime | None, end: datetime | None) -> None:
        """Recompute the hours, days or months overlapping [start, end) (None: unbounded)."""
        lo, hi = self._range()
        params = {"start": start, "end": end}
        cursor.execute(
            f"DELETE FROM {self.table} WHERE {self.time} >= {lo} AND {self.time} < {hi}", params
        )
        # In time order, as the triggers write them: a window's rows are then
        # a few adjacent pages, not rows scattered over the whole table.
        cursor.execute(
            f"INSERT INTO {self.table} ({self._columns()}) "
            + self._grouped("events", where=f"timestamp >= {lo} AND timestamp < {hi}"),
            params,
        )

    def differences(self, cursor, start: datetime | None, end: datetime | None) -> list[str]:
        """Each group where the table and `events` disagree, as a sentence."""
        lo, hi = self._range()
        key_columns = [self.time, *(c for c, _ in self.keys)]
        counts = self._values()
        stored = (
            f"SELECT {', '.join(key_columns + counts)} FROM {self.table} "
            f"WHERE {self.time} >= {lo} AND {self.time} < {hi}"
        )
        computed = self._grouped("events", where=f"timestamp >= {lo} AND timestamp < {hi}")
        cursor.execute(
            f"SELECT {', '.join(f's.{c}' for c in key_columns)}, "
            f"{', '.join(f'r.{c}' for c in key_columns)}, "
            f"{', '.join(f's.{c}' for c in counts)}, {', '.join(f'r.{c}' for c in counts)} "
            f"FROM ({stored}) AS s FULL JOIN ({computed}) AS r ({', '.join(key_columns + counts)}) "
            f"ON {' AND '.join(self._equal(c, f's.{c}', f'r.{c}') for c in key_columns)} "
            f"WHERE ({', '.join(f's.{c}' for c in counts)}) IS DISTINCT FROM "
            f"({', '.join(f'r.{c}' for c in counts)}) ORDER BY 1, 2 LIMIT 1000",
            {"start": start, "end": end},
        )
        width = len(key_columns)
        found = []
        for row in cursor.fetchall():
            key = row[:width] if row[0] is not None else row[width : 2 * width]
            have, want = row[2 * width : 2 * width + len(counts)], row[2 * width + len(counts) :]
            # Only the counts that disagree: the others would hide them.
            wrong = [i for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b]
            found.append(
                f"{self.table} {dict(zip(key_columns, key, strict=True))}: "
                f"stored { ({counts[i]: have[i] for i in wrong}) }, "
                f"events say { ({counts[i]: want[i] for i in wrong}) }"
            )
        return found

    def time_span(self, cursor) -> list[tuple[datetime, datetime]]:
        """The months holding events, as [start, end) chunks of a rebuild."""
        cursor.execute(
            "SELECT date_trunc('month', min(timestamp), 'UTC'), max(timestamp) FROM events"
        )
        first, last = cursor.fetchone()
        chunks = []
        while first is not None and first <= last:
            nxt = (first.replace(day=1) + _MONTH).replace(day=1)
            chunks.append((first, nxt))
            first = nxt
        return chunks


_MONTH = timedelta(days=32)


@dataclass(frozen=True)
class LatestEvents(TableDeclaration):
    """The newest successful event of `types` for each key, one row per key:
    each key and value is (its column, its SQL over an events row `e`);
    `rank` names the values that say which event is newest (compared in
    order, the greatest wins), and the last value is a flag the readers ask
    about (the member removed, the allocation freed). An inserted event
    replaces a row only if it ranks higher, so arrival order does not
    matter; a deleted event's keys are recomputed from what remains."""

    table: str
    keys: tuple[tuple[str, str], ...]
    values: tuple[tuple[str, str], ...]
    rank: tuple[str, ...]
    types: str  # a SQL list of the event types (sql_literals)
    only: str = "TRUE"
    nullable: tuple[str, ...] = ()  # the key columns that may be NULL

    def _latest(self, rows: str, where: str = "TRUE") -> str:
        values = dict(self.values)
        keys = ", ".join(sql for _, sql in self.keys)
        order = ", ".join(f"{values[c]} DESC" for c in self.rank)
        select = ", ".join([sql for _, sql in self.keys] + [sql for _, sql in self.values])
        return (
            f"SELECT DISTINCT ON ({keys}) {select} FROM {rows} AS e "
            f"WHERE e.event_type IN ({self.types}) AND e.success AND ({self.only}) "
            f"AND ({where}) ORDER BY {keys}, {order}"
        )

    def _columns(self) -> str:
        return ", ".join(c for c, _ in (*self.keys, *self.values))

    def _same_key(self, left: str, right: str) -> str:
        return " AND ".join(self._equal(c, f"{left}.{c}", f"{right}.{c}") for c, _ in self.keys)

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        if sign > 0:
            key_columns = ", ".join(c for c, _ in self.keys)
            updated = ", ".join(f"{c} = excluded.{c}" for c, _ in self.values)
            newer = ", ".join(f"excluded.{c}" for c in self.rank)
            stored = ", ".join(f"m.{c}" for c in self.rank)
            return [
                f"INSERT INTO {self.table} AS m ({self._columns()}) {self._latest(rows)} "
                f"ON CONFLICT ({key_columns}) DO UPDATE SET {updated} "
                f"WHERE ({newer}) > ({stored})"
            ]
        keys = (
            "SELECT DISTINCT "
            + ", ".join(f"{sql} AS {c}" for c, sql in self.keys)
            + f" FROM {rows} AS e WHERE e.event_type IN ({self.types}) AND e.success "
            f"AND ({self.only})"
        )
        matches = " AND ".join(self._equal(c, sql, f"g.{c}") for c, sql in self.keys)
        return [
            f"DELETE FROM {self.table} AS m USING ({keys}) AS g WHERE {self._same_key('m', 'g')}",
            f"INSERT INTO {self.table} ({self._columns()}) "
            + self._latest("events", f"EXISTS (SELECT 1 FROM ({keys}) AS g WHERE {matches})"),
        ]

    def rebuild(self, cursor) -> None:
        cursor.execute(f"DELETE FROM {self.table}")
        cursor.execute(f"INSERT INTO {self.table} ({self._columns()}) " + self._latest("events"))

    def differences(self, cursor) -> list[str]:
        keys = [c for c, _ in self.keys]
        flag = self.values[-1][0]
        cursor.execute(
            "SELECT "
            + ", ".join(f"coalesce(s.{c}, r.{c})" for c in keys)
            + f", s.last_uuid, r.last_uuid, s.{flag}, r.{flag} "
            f"FROM {self.table} AS s FULL JOIN ({self._latest('events')}) "
            f"AS r ({self._columns()}) ON {self._same_key('s', 'r')} "
            f"WHERE (s.last_uuid, s.{flag}) IS DISTINCT FROM (r.last_uuid, r.{flag}) "
            f"ORDER BY {', '.join(str(i + 1) for i in range(len(keys)))} LIMIT 1000"
        )
        width = len(keys)
        return [
            f"{self.table} ({', '.join(str(k) for k in row[:width])}): stored event "
            f"{row[width]} ({flag}={row[width + 2]}), events say {row[width + 1]} "
            f"({flag}={row[width + 3]})"
            for row in cursor.fetchall()
        ]
