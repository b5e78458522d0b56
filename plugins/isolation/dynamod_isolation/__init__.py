"""dynamod-isolation: see README.md of this distribution."""
