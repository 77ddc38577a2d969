"""``nightjar``: the operator CLI. Inspection, rollback, freeze and gc need only ``shared``;
``render`` and ``validate`` import the configurator when they run."""
