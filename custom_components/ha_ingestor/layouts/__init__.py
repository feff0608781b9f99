"""The two layouts of a state change: core's ``legacy`` one, and our ``optimized`` one with the
transform between them. Built on Home Assistant's ``State``, as core's integration is."""
