"""dynamod-logd: the log daemon (see docs/logd.md)."""
