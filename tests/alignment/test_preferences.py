"""Preference files: written checked and atomically, read back with one-line errors; pairs
made from sampled continuations by a judge."""

from __future__ import annotations

import json

import pytest

from lmbench.alignment.preferences import load_preferences, make_pairs, write_preferences
from lmbench.core.errors import LmbenchError
from lmbench.data.examples import PreferencePair


class Longer:
    def compare(self, prompt, first, second):
        return 0.5 if len(first) == len(second) else float(len(first) > len(second))


def _write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_round_trip(tmp_path):
    pairs = [PreferencePair("p", "good one", "bad"), PreferencePair("q\n", "yes", "no")]
    path = write_preferences(tmp_path / "pairs.jsonl", pairs)
    assert load_preferences(path) == pairs


@pytest.mark.parametrize("record, message", [
    ({"prompt": "p", "rejected": "b"}, "pairs.jsonl:2: missing field 'chosen'"),
    ({"prompt": "p", "chosen": "a"}, "pairs.jsonl:2: missing field 'rejected'"),
    ({"chosen": "a", "rejected": "b"}, "pairs.jsonl:2: missing field 'prompt'"),
    ({"prompt": "p", "chosen": "", "rejected": "b"}, "pairs.jsonl:2: field 'chosen' is empty"),
    ({"prompt": "p", "chosen": "a", "rejected": "  \n"}, "field 'rejected' is empty"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"},
     "pairs.jsonl:2: field 'rejected' equals 'chosen'"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "field 'chosen' must be a string"),
    ({"prompt": "p", "response": "r"}, "field 'response' in a preference file"),
    ({"prompt": "p"}, "missing field 'chosen'"),
])
def test_bad_preference_files_are_one_line_errors(tmp_path, record, message):
    path = _write(tmp_path / "pairs.jsonl", {"prompt": "ok", "chosen": "a", "rejected": "b"},
                  record)
    with pytest.raises(LmbenchError, match=message) as error:
        load_preferences(path)
    assert "\n" not in str(error.value)


def test_missing_empty_and_broken_files(tmp_path):
    with pytest.raises(LmbenchError, match="preference file not found"):
        load_preferences(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(LmbenchError, match="no preference pairs"):
        load_preferences(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"prompt": \n')
    with pytest.raises(LmbenchError, match="bad.jsonl:1: not a JSON object"):
        load_preferences(tmp_path / "bad.jsonl")


def test_a_bad_pair_writes_nothing(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with pytest.raises(LmbenchError, match="pair 1: field 'rejected' equals 'chosen'"):
        write_preferences(path, [PreferencePair("p", "a", "b"), PreferencePair("p", "x", "x")])
    assert not path.exists()


def test_make_pairs_orders_by_the_judge_and_skips_ties_of_text():
    made = make_pairs(["p", "q", "r"], [["short", "much longer"], ["same", "same"],
                                        ["long one", "tiny"]], Longer())
    assert made.pairs == (PreferencePair("p", "much longer", "short"),
                          PreferencePair("r", "long one", "tiny"))
    assert made.skipped == 1 and made.labels.prefers_first == (0.0, 1.0)
    with pytest.raises(LmbenchError, match="at least two continuations"):
        make_pairs(["p"], [["only"]], Longer())
