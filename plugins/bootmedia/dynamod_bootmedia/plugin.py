"""Entry point of the dynamod-bootmedia plugin (hooks are added by its own issue)."""
