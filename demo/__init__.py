"""The demo: a generated portal history, the six demo facilities and the
commands `make run` uses to fill and keep a local database lively.

It stands at the top of the import graph: it uses audit, facilities and
sphere_stats, and none of them imports it.
"""
