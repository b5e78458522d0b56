"""dynamod-bootmedia: see README.md of this distribution."""
