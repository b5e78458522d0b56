"""dynamod-readiness-http: the readiness type ``http`` for dynamod."""

__version__ = "0.1.0"
