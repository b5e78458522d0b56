"""One module per measurement; each has ``KEY`` and ``run(ctx) -> Table``."""
