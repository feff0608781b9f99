"""What ha_ingestor does without Home Assistant: InfluxDB, delivery, the migration's work.

Nothing in here imports ``homeassistant`` (``tests/test_architecture.py`` holds it to that): the
InfluxDB clients (``influx``), line protocol and the InfluxQL parser, delivery (``writer``,
``spool``, ``retry``), ``rollups``, the rehearsal-data ``generator``, and the migration's model,
ledger and work on the server (``migration``). The Home Assistant glue around it is the
package above. See docs/architecture.md.
"""
