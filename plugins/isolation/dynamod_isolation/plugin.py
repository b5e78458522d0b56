"""Entry point of the dynamod-isolation plugin (hooks are added by its own issue)."""
