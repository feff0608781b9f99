"""The migration without Home Assistant: its rules and state (``model``), what it wrote
(``ledger``), and its work on InfluxDB (``engine``: discovery, backfill, validation, removal)."""
