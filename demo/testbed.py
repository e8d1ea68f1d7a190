"""What happens on the demo's facilities: experiments are created and
pushed, realized on a facility's hosts, materialized and freed; the
facilities' controllers report their status.

Testbed is one half of demo.history.Generator (demo.people is the other):
its methods use the generator's world, random source, clock and scheduler.
Each facility allocates from its own hosts, never more than it has, and its
users release experiments to keep it between MIN_USE and TARGET_USE of its
capacity; nothing is allocated or freed there while it is down or in
maintenance.
"""

import math
import random
from datetime import datetime, timedelta

from demo.sites import (
    FACILITIES,
    FACILITY_NODES,
    HEARTBEAT_LONGEST,
    HEARTBEAT_SHARE,
    INCIDENT_INTERVAL,
    INCIDENTS,
    INTERVAL_SLACK,
    MIN_USE,
    REPORT_EVERY_INCIDENT,
    TARGET_USE,
    facility_state,
)
from demo.world import LEGACY_PICK, TOPICS, Experiment

REALIZE_ERRORS = (
    "insufficient resources at facility",
    "model compile error: undefined node",
    "link capacity exceeded",
    "facility unreachable",
)
# The share of realizations their owner materializes within 90 minutes.
MATERIALIZE_SOON = 0.5
MATERIALIZE_ERRORS = ("image boot timeout", "switch configuration failed", "DHCP lease failure")


class Testbed:
    def is_frozen(self, project: str) -> bool:
        return self.world.group_states.get(("project", project)) == "frozen"

    def experiment(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        if not w.project_pool:
            return self.create_group(ts)
        if w.exp_pool and rng.random() < 0.6:
            exp = w.experiments[w.exp_pool.choice(rng)]
            if self.is_frozen(exp.project):
                return []
            if exp.realization is None and rng.random() < 0.1:
                key = (exp.project, exp.name)
                del w.experiments[key]
                w.exp_pool.discard(key)
                w.pushed_pool.discard(key)
                w.exps_per_project[exp.project] -= 1
                members = w.projects.get(exp.project) or {"": ""}
                caller = rng.choice(list(members))
                return [
                    self.ev(
                        ts,
                        "experiment_deleted",
                        caller,
                        exp.name,
                        "experiment",
                        payload={"project": exp.project},
                    )
                ]
            exp.revision += 1
            w.pushed_pool.add((exp.project, exp.name))
            caller = rng.choice(list(w.projects[exp.project]))
            revision = f"{rng.getrandbits(40):010x}"
            return [
                self.ev(
                    ts,
                    "experiment_pushed",
                    caller,
                    exp.name,
                    "experiment",
                    payload={
                        "project": exp.project,
                        "model_file": "model.py",
                        "revision": revision,
                    },
                )
            ]
        legacy = w.unseen.pick("project", rng) if rng.random() < LEGACY_PICK else None
        project = legacy or w.project_pool.choice(rng)
        name = f"{rng.choice(TOPICS)}-exp{rng.randint(1, 99)}"
        if (project, name) in w.experiments:
            return []
        w.experiments[(project, name)] = Experiment(project, name)
        w.exp_pool.add((project, name))
        w.exps_per_project[project] = w.exps_per_project.get(project, 0) + 1
        w.unseen.discard(("project", project))
        caller = rng.choice(list(w.projects[project]))
        return [
            self.ev(
                ts, "experiment_created", caller, name, "experiment", payload={"project": project}
            )
        ]

    def resources(self, ts) -> list[dict]:
        """A member of a project realizes one of its pushed experiments, or
        materializes, dematerializes or frees one realized already."""
        w, rng = self.world, self.rng
        if not w.pushed_pool:
            return self.experiment(ts)
        exp = w.experiments[w.pushed_pool.choice(rng)]
        members = w.projects.get(exp.project)
        if not members or self.is_frozen(exp.project):
            return []
        caller = rng.choice(list(members))
        if exp.realization is None:
            return self.realize(ts, exp, caller)
        payload, facility = exp.realization, exp.realization["facility"]
        unreachable = facility_state(facility, ts, self.end)[0] in ("down", "maintenance")
        if not exp.materialized and rng.random() < 0.7:
            return self.materialize(ts, exp.project, exp.name)
        if unreachable:
            # Nothing is freed while the facility cannot be reached: what ran
            # there stays held (and counted) through the outage.
            kind, prefix = (
                ("materialization", "mtz") if exp.materialized else ("realization", "rlz")
            )
            return [
                self.ev(
                    ts,
                    f"{kind}_freed",
                    caller,
                    f"{prefix}.{exp.name}.{exp.project}",
                    kind,
                    target=facility,
                    success=False,
                    error="facility unreachable",
                    payload=payload,
                )
            ]
        held = FACILITY_NODES[facility] - len(w.free_hosts[facility])
        low = held - len(payload["resources"]) < MIN_USE * FACILITY_NODES[facility]
        if low and not exp.materialized:
            return []
        return self.free(exp, ts, caller, keep_realization=low or rng.random() < 0.5)

    def realize(self, ts, exp: Experiment, caller: str) -> list[dict]:
        """Realize `exp` on a random facility: hosts allocated from its free
        ones, or a failure; on a facility past its TARGET_USE, an experiment
        there is released instead."""
        w, rng = self.world, self.rng
        facility = rng.choice(FACILITIES)
        state, _ = facility_state(facility, ts, self.end)
        size = rng.randint(1, 8)
        base = {
            "project": exp.project,
            "experiment": exp.name,
            "facility": facility,
            "revision": str(exp.revision),
            "model_file": "model.py",
            "nodes": [f"n{i}" for i in range(size)],
            "lans": [f"lan{i}" for i in range(max(1, size // 3))],
        }
        free = w.free_hosts[facility]
        held = FACILITY_NODES[facility] - len(free)
        unreachable = state in ("down", "maintenance")
        busy = held + size > TARGET_USE[facility] * FACILITY_NODES[facility]
        if busy and not unreachable and w.realized_at[facility]:
            # An experiment there is released rather than a new one added.
            return self.release(ts, facility)
        error = self.realize_error(unreachable, size > len(free))
        if error is None:
            hosts = []
            for _ in range(size):
                hosts.append(free.choice(rng))
                free.discard(hosts[-1])
            exp.realization = {**base, "resources": [f"{facility}-n{h:03d}" for h in sorted(hosts)]}
            w.realized_at[facility].add((exp.project, exp.name))
            if rng.random() < MATERIALIZE_SOON:
                wait = timedelta(minutes=1 + 89 * rng.random())
                self.schedule(ts + wait, "materialize", exp.project, exp.name)
        return [
            self.ev(
                ts,
                "realization_allocated",
                caller,
                f"rlz.{exp.name}.{exp.project}",
                "realization",
                target=facility,
                success=error is None,
                error=error,
                payload=exp.realization or {**base, "resources": []},
            )
        ]

    def realize_error(self, unreachable: bool, too_big: bool) -> str | None:
        """Why a realization fails, or None: the facility cannot be reached,
        has too few free hosts, or (7 in 100) something else went wrong."""
        if unreachable:
            return "facility unreachable"
        if too_big:
            return "insufficient resources at facility"
        if self.rng.random() < 0.07:
            return self.rng.choice(REALIZE_ERRORS)
        return None

    def materialize(self, ts, project: str, name: str) -> list[dict]:
        """A member boots a realized experiment (scheduled after its
        realization, or picked at random): nothing happens if it was freed,
        or its project frozen or emptied, in the meantime."""
        exp = self.world.experiments.get((project, name))
        members = self.world.projects.get(project)
        if exp is None or exp.realization is None or exp.materialized:
            return []
        if not members or self.is_frozen(project):
            return []
        caller = self.rng.choice(list(members))
        payload, facility = exp.realization, exp.realization["facility"]
        unreachable = facility_state(facility, ts, self.end)[0] in ("down", "maintenance")
        failed = unreachable or self.rng.random() < 0.06
        if not failed:
            exp.materialized = True
        error = None
        if failed:
            error = "facility unreachable" if unreachable else self.rng.choice(MATERIALIZE_ERRORS)
        return [
            self.ev(
                ts,
                "materialization_allocated",
                caller,
                f"mtz.{name}.{project}",
                "materialization",
                target=facility,
                success=not failed,
                error=error,
                payload=payload,
            )
        ]

    def release(self, ts, facility: str) -> list[dict]:
        """Someone frees a random experiment realized at `facility`."""
        w, rng = self.world, self.rng
        exp = w.experiments[w.realized_at[facility].choice(rng)]
        # A project keeps its members while it has experiments (delete_group).
        caller = rng.choice(list(w.projects[exp.project]))
        return self.free(exp, ts, caller, keep_realization=False)

    def free(self, exp: Experiment, ts, caller: str, *, keep_realization: bool) -> list[dict]:
        """Dematerialize `exp` if it is materialized, then free its realization
        and return its hosts, unless `keep_realization` and there was a
        materialization to stop."""
        payload, facility = exp.realization, exp.realization["facility"]
        events = []
        if exp.materialized:
            events.append(
                self.ev(
                    ts,
                    "materialization_freed",
                    caller,
                    f"mtz.{exp.name}.{exp.project}",
                    "materialization",
                    target=facility,
                    payload=payload,
                )
            )
            exp.materialized = False
            if keep_realization:
                return events
        events.append(
            self.ev(
                ts + timedelta(milliseconds=20),
                "realization_freed",
                caller,
                f"rlz.{exp.name}.{exp.project}",
                "realization",
                target=facility,
                payload=payload,
            )
        )
        free = self.world.free_hosts[facility]
        for host in payload["resources"]:
            free.add(int(host.rsplit("-n", 1)[1]))
        self.world.realized_at[facility].discard((exp.project, exp.name))
        exp.realization = None
        return events

    def facility_report(self, ts, slug: str) -> list[dict]:
        state, message = facility_state(slug, ts, self.end)
        # The next report comes a heartbeat's period later while all is well,
        # REPORT_EVERY_INCIDENT later (or at the incident's end) if not.
        holds = self.heartbeat_every * INTERVAL_SLACK if state == "up" else INCIDENT_INTERVAL
        payload = {
            "status": state,
            **({"message": message} if message else {}),
            "interval": math.ceil(holds.total_seconds()),
        }
        return [
            self.ev(ts, "facility_status", f"{slug}-controller", slug, "facility", payload=payload)
        ]

    def report_schedule(self) -> list[tuple[datetime, str]]:
        """When each facility's controller reports, oldest first: heartbeats
        over the whole history, each incident's start, a report every
        REPORT_EVERY_INCIDENT while it lasts and the first report after it,
        and a last report a few minutes before the end. At most half the
        events; the newest are kept."""
        count = HEARTBEAT_SHARE * self.n / len(FACILITIES)
        every = (self.end - self.start) / max(count, 1)
        every = min(max(every, REPORT_EVERY_INCIDENT), HEARTBEAT_LONGEST)
        self.heartbeat_every = every  # the period each heartbeat's interval names
        rng = random.Random(self.rng.random())  # the activity's draws stay the same
        schedule = set()
        for i, slug in enumerate(FACILITIES):
            # Controllers started at different moments, with a little jitter.
            at = self.start + every * rng.random()
            while at < self.end:
                schedule.add((at, slug))
                at += every * (0.9 + 0.2 * rng.random())
            schedule.add((self.end - timedelta(minutes=2 + i), slug))
        for slug, began, lasted, _, _ in INCIDENTS:
            at, over = self.end - began, self.end - began + lasted
            while at < min(over, self.end):
                if at > self.start:
                    schedule.add((at, slug))
                at += REPORT_EVERY_INCIDENT
            if self.start < over < self.end:
                schedule.add((over, slug))
        return sorted(schedule)[-(self.n // 2) :] if self.n > 1 else []
