"""The compact id set behind duplicate detection: a set, at 16 bytes an id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchrunner.input.idset import IdSet


def test_add_reports_new_and_repeated_ids_across_growth() -> None:
    ids = IdSet()
    keys = [f"req-{i}" for i in range(20_000)]  # several doublings of the table
    assert all(ids.add(k) for k in keys)
    assert not any(ids.add(k) for k in keys)
    assert len(ids) == len(keys)
    assert all(k in ids for k in keys)
    assert "req-20000" not in ids and "" not in ids


@given(st.lists(st.text(max_size=12)))
def test_behaves_like_a_set(keys: list[str]) -> None:
    ids, reference = IdSet(), set()
    for k in keys:
        assert ids.add(k) == (k not in reference)
        reference.add(k)
    assert len(ids) == len(reference)
    assert all(k in ids for k in reference)
