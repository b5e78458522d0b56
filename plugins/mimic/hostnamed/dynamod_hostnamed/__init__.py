"""dynamod-hostnamed: org.freedesktop.hostname1, timedate1 and locale1 for dynamod."""
