"""The fast tier: the Home Assistant glue against an in-memory InfluxDB (tests/fake_influx.py)."""
