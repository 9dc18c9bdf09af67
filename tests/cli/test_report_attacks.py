"""Attacks on cod's own error line (cod.cli.report): text from anywhere is shown, never obeyed."""

from __future__ import annotations

import pytest

ESC = "\x1b"
EVIL = "\x1b]0;PWNED\x07\x1b[2J\r\nforged line \u202e"


def test_cods_own_error_line_shows_control_characters_as_question_marks(capfd: pytest.CaptureFixture[str]) -> None:
    from cod.cli import report

    assert report(f"import {EVIL} is unknown", f"hint {EVIL}", 6) == 6
    err = capfd.readouterr().err
    assert ESC not in err and "\u202e" not in err and err.count("\n") == 2
    assert err.startswith("error: import ?]0;PWNED??[2J") and "forged line ?" in err
