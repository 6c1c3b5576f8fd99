"""bench/__main__.py: the server setups a load sweep runs."""

from __future__ import annotations

import pytest

from bench.__main__ import _setups


def test_setups_parse_workers_threads_opencv_and_solo() -> None:
    assert _setups("1x2,1x2s1, 2x1o-1 ,4x1o2s3") == [
        (1, 2, None, None),
        (1, 2, None, 1),
        (2, 1, -1, None),
        (4, 1, 2, 3),
    ]


@pytest.mark.parametrize("bad", ["1x", "x2", "1x2s", "1x2s1o1", "2 workers"])
def test_bad_setups_say_the_syntax(bad: str) -> None:
    with pytest.raises(SystemExit, match=r"WORKERSxTHREADS\[oOPENCV_THREADS\]\[sSOLO_THREADS\]"):
        _setups(bad)
