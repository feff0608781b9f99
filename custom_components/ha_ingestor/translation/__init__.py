"""InfluxQL written for the legacy layout, and Grafana dashboards of it, moved to ours."""
