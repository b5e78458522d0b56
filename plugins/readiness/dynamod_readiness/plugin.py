"""Entry point of the dynamod-readiness plugin (hooks are added by its own issue)."""
