"""The portal's inventory as catalogued snapshot events (manage.py import_inventory).

The portal's users, organizations, projects, memberships and experiments are
older than the audit log. An inventory is the portal's own list of them at
one moment, `taken_at`, read from JSON or CSV (docs/inventory.md). It becomes
events at that moment, only where it differs from what the events already
say at that moment:

- a listed entity unknown or gone then, or in another state, category or
  description: its *_catalogued event (the catalog's `lifecycle` entry sets
  the state the payload names);
- a listed membership absent then, or with another role or state: its
  *_member_catalogued event;
- in a section the inventory has, an entity (or a membership of a listed
  organization or project) that exists then but is not listed: its
  *_deleted event, with payload.source "inventory" (unless keep_absent).

The events then take the path of every other event: the catalog validates
them (audit.ingest.validate_event), `events` stores them, the triggers fold
them into the pre-aggregates, and later events continue from there. Each
event's uuid is derived from (taken_at, event type, scope, name, member), so
importing one inventory twice, even at the same time, stores it once.

Its parts, in the order an import runs them: records.py (what an inventory
holds), reading.py (the file read and checked), planning.py (the comparison
with the events and the events it plans). manage.py import_inventory stores
the planned events.
"""

from audit.inventory.planning import Plan, plan, validated
from audit.inventory.reading import FORMATS, check, read, taken_at_problem
from audit.inventory.records import Inventory, Problem

__all__ = [
    "FORMATS",
    "Inventory",
    "Plan",
    "Problem",
    "check",
    "plan",
    "read",
    "taken_at_problem",
    "validated",
]
