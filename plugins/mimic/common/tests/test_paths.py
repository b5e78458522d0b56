"""Object-path label escaping, as the systemd clients compute it."""

from __future__ import annotations

import pytest
from dynamod_mimic_common import child_path, escape_label, unescape_label
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize(("name", "label"), [
    ("foo.service", "foo_2eservice"),
    ("-.slice", "_2d_2eslice"),
    ("session-1.scope", "session_2d1_2escope"),
    ("1", "_31"),
    ("c2", "c2"),
    ("", "_"),
    ("über", "_c3_bcber"),
])
def test_known_labels(name, label):
    assert escape_label(name) == label
    assert unescape_label(label) == name


@given(st.text())
def test_round_trip(name):
    label = escape_label(name)
    assert label and all(c.isascii() and (c.isalnum() or c == "_") for c in label)
    assert unescape_label(label) == name


@pytest.mark.parametrize("label", ["a_2", "a_zz", "a-b", "ü", "_ff", "a/b"])
def test_invalid_labels(label):
    assert unescape_label(label) is None


def test_child_path():
    assert child_path("/org/freedesktop/systemd1/unit/", "a.b") == "/org/freedesktop/systemd1/unit/a_2eb"
