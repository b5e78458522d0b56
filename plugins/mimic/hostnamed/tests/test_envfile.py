"""Environment-style files: what a shell reads back is what we meant."""

from __future__ import annotations

import subprocess

from dynamod_hostnamed import envfile
from hypothesis import given
from hypothesis import strategies as st

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x00"),
    max_size=40,
)


@given(_text)
def test_quote_round_trips(value: str) -> None:
    assert envfile.parse(f"K={envfile.quote(value)}\n").get("K", "") == value


def test_shell_reads_what_we_write() -> None:
    values = ["Lennart's Laptop", 'say "hi" $HOME `id` \\ back', "plain", "Berlin, Germany", "ä ö"]
    text = "".join(f"V{i}={envfile.quote(v)}\n" for i, v in enumerate(values))
    script = text + "".join(f'printf "%s\\0" "$V{i}"\n' for i in range(len(values)))
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == values


def test_parse_forms() -> None:
    text = (
        "# comment\n\n"
        'A="double \\"q\\" \\$x"\n'
        "B='single $x \\n'\n"
        "C=bare\\ word\n"
        "export D=exported\n"
        "not an assignment\n"
        "E=x # trailing comment\n"
        'F="multi\nline"\n'
        "A=last wins\n"
    )
    got = envfile.parse(text)
    assert got == {
        "A": "last wins",
        "B": "single $x \\n",
        "C": "bare word",
        "D": "exported",
        "E": "x",
        "F": "multi\nline",
    }


def test_update_keeps_comments_and_foreign_keys() -> None:
    old = "# machine\nPRETTY_HOSTNAME=old\nHARDWARE_VENDOR=Acme\nPRETTY_HOSTNAME=dup\n"
    new = envfile.update(old, {"PRETTY_HOSTNAME": "New Name", "CHASSIS": "vm"})
    assert new == '# machine\nPRETTY_HOSTNAME="New Name"\nHARDWARE_VENDOR=Acme\nCHASSIS=vm\n'


def test_update_removes_and_empties() -> None:
    assert envfile.update("A=1\nB=2\n", {"A": ""}) == "B=2\n"
    assert envfile.update("A=1\n\n", {"A": None}) == ""
    assert envfile.update(None, {"A": ""}) == ""
