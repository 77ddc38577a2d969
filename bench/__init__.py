"""``make bench``: measured costs of the configurator cycle (results as a table and JSON)."""
