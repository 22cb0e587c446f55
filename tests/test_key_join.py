"""The numpy join of digests' text against a scan's keys (storage/key_join.py)."""

from __future__ import annotations

import random

from fleche.digest import Digest, digest
from fleche.storage.key_join import positions


def _texts(count: int, seed: int) -> list[str]:
    return [str(digest((seed, n))) for n in range(count)]


def test_each_text_finds_its_row_in_sorted_or_unsorted_keys():
    keys = sorted(_texts(5000, 1))
    absent = _texts(300, 2)
    wanted = random.Random(3).sample(keys, 4000) + absent + keys[:50]
    random.Random(4).shuffle(wanted)
    expected = [keys.index(w) if w in keys else -1 for w in wanted]
    assert positions(keys, wanted).tolist() == expected
    shuffled = keys[:]
    random.Random(5).shuffle(shuffled)
    found = positions(shuffled, [Digest(w) for w in wanted]).tolist()
    assert found == [shuffled.index(w) if w in shuffled else -1 for w in wanted]


def test_keys_that_are_not_digests_text_leave_the_join_to_the_caller():
    keys = _texts(10, 6)
    assert positions(keys, ["not a digest"]) is None
    assert positions(keys, [keys[0].upper()]) is None
    assert positions(["x" * 32], keys) is None
    for odd in (keys[0].encode(), None, 32, list(keys[0])):  # not text, whatever its length
        assert positions(keys, [keys[1], odd]) is None


def test_nothing_scanned_finds_nothing():
    assert positions([], _texts(3, 7)).tolist() == [-1, -1, -1]
    assert positions(_texts(3, 7), []).tolist() == []
