"""Time-sortable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedistream.core.ids import ID_LENGTH, looks_like_id, make_id

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@given(
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_ids_sort_by_time(offset_ms: int, gap_ms: int, rand_a: int, rand_b: int) -> None:
    earlier = EPOCH + timedelta(milliseconds=offset_ms)
    later = earlier + timedelta(milliseconds=gap_ms + 1)
    a, b = make_id(earlier, rand_a), make_id(later, rand_b)
    assert a < b
    assert looks_like_id(a) and looks_like_id(b)
    assert len(a) == ID_LENGTH


def test_same_millisecond_differs_by_random_part() -> None:
    assert make_id(EPOCH, 1) != make_id(EPOCH, 2)


def test_before_1970_is_refused() -> None:
    with pytest.raises(ValueError):
        make_id(datetime(1960, 1, 1, tzinfo=UTC), 0)


@pytest.mark.parametrize(
    "text", ["", "u" * 16, "i" * 16, "0123456789ABCDEF", "06h1cdhnwpftw02", "../etc/passwd"]
)
def test_looks_like_id_rejects_non_ids(text: str) -> None:
    assert not looks_like_id(text)
