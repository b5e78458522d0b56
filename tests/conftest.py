"""Shared fixtures: a config tree and a real dynamod-svmgr per test."""

from __future__ import annotations

from dynamod.testing import manager_fixtures

tree, svmgr = manager_fixtures()
