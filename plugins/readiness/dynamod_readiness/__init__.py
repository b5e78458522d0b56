"""dynamod-readiness: see README.md of this distribution."""
