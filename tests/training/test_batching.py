"""Batches: stream batches as before the reshape, per-example batches with loss masks and the
ignore index, and the JSONL loader's field-named errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmbench.core.errors import LmbenchError
from lmbench.core.tokenizers import CharTokenizer
from lmbench.data.corpora import _lines_split
from lmbench.data.examples import Example, PreferencePair, load_examples
from lmbench.training.batching import (
    IGNORE_INDEX,
    ExampleBatches,
    PairBatch,
    StreamBatches,
    collate,
    tokenize_response,
)


def _old_batches(ids, B, T, seed, sequential, step):
    """The trainer's ``_Batches.__call__`` before objectives and batches became values."""
    ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    if sequential:
        length = (len(ids) - 1) // B
        streams, steps_per_epoch = ids[: length * B + 1], max(1, (length - 1) // T)
        chunk = step % steps_per_epoch
        offsets = torch.arange(B) * length + chunk * T
        window = streams[offsets[:, None] + torch.arange(T + 1)[None, :]]
        return window[:, :-1], window[:, 1:], chunk == 0
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(ids) - T - 1, (B,), generator=generator)
    window = ids[starts[:, None] + torch.arange(T + 1)[None, :]]
    return window[:, :-1], window[:, 1:], False


@pytest.mark.parametrize("sequential", [False, True])
def test_stream_batches_are_the_old_ones(sequential):
    ids = np.random.default_rng(0).integers(0, 50, 1000)
    batches = StreamBatches(ids, 4, 16, seed=3, sequential=sequential)
    for step in (0, 1, 7, 15, 16, 100):
        batch = batches(step)
        inputs, targets, starts = _old_batches(ids, 4, 16, 3, sequential, step)
        assert torch.equal(batch.inputs, inputs) and torch.equal(batch.targets, targets)
        assert batch.resets_state == starts and batch.n_tokens == 64
    assert batches.fingerprint() == StreamBatches(ids, 4, 16, seed=9).fingerprint()
    assert batches.fingerprint() != StreamBatches(ids[1:], 4, 16, seed=3).fingerprint()


def test_sequential_streams_too_short_for_the_batch_are_one_line():
    ids = np.arange(100) % 7  # 4 streams of 24 tokens cannot give 33-token windows
    with pytest.raises(LmbenchError, match=r"batch_size = 4 streams .* at least 133"):
        StreamBatches(ids, 4, 32, sequential=True)
    batches = StreamBatches(np.arange(133) % 7, 4, 32, sequential=True)  # exactly enough
    for step in range(3):
        assert batches(step).inputs.shape == (4, 32)


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer().fit(_lines_split("train", "abcdefgh ijk?!\n"))


def test_examples_are_padded_with_a_response_mask(tokenizer):
    short = tokenize_response(tokenizer, "ab", "c")
    long = tokenize_response(tokenizer, "abcd", "efg")
    assert short.response_ids[-1] == tokenizer.boundary_id  # a response ends at a boundary
    batch = collate([short, long], tokenizer.boundary_id)
    b = tokenizer.boundary_id
    assert batch.input_ids.shape == (2, 8)  # [b] a b c d e f g (+ b as the last target)
    assert batch.input_ids[0].tolist()[:4] == [b, *tokenizer.encode("abc")]
    assert batch.target_ids[0].tolist() == [*tokenizer.encode("abc"), b] + [IGNORE_INDEX] * 4
    # the loss counts the response and its closing boundary only (row 0: targets c, b)
    assert batch.loss_mask[0].tolist() == [False, False, True, True] + [False] * 4
    assert batch.loss_mask[1].tolist() == [False] * 4 + [True] * 4
    assert (batch.masked_targets()[~batch.loss_mask] == IGNORE_INDEX).all()
    cut = collate([long], b, max_len=5)  # the prompt is cut from the left
    assert cut.input_ids.shape == (1, 5) and cut.loss_mask[0].tolist() == [False] + [True] * 4


def test_example_batches_visit_every_example_each_epoch(tokenizer):
    examples = [Example(letter, "k") for letter in "abcdef"]
    batches = ExampleBatches(examples, tokenizer, 2, seed=1)
    for epoch in (0, 1):
        firsts = torch.cat([batches(3 * epoch + s).input_ids[:, 1] for s in range(3)])
        assert sorted(firsts.tolist()) == sorted(tokenizer.encode("abcdef"))
    assert torch.equal(batches(4).input_ids, batches(4).input_ids)  # a function of the step
    assert batches.fingerprint() != ExampleBatches(examples[:-1], tokenizer, 2).fingerprint()


def test_pairs_share_one_length(tokenizer):
    pairs = [PreferencePair("ab", "c", "defgh"), PreferencePair("a", "bcd", "e")]
    batch = ExampleBatches(pairs, tokenizer, 2)(0)
    assert isinstance(batch, PairBatch)
    assert batch.chosen.input_ids.shape == batch.rejected.input_ids.shape == (2, 8)
    assert batch.n_tokens == 32


def test_the_jsonl_loader_names_the_line_and_field(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "q", "response": "a"}\n\n{"prompt": "r", "response": "b"}\n')
    assert load_examples(path) == [Example("q", "a"), Example("r", "b")]
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    assert load_examples(path) == [PreferencePair("q", "a", "b")]
    for line, message in [('{"prompt": "q"}', "sft.jsonl:1: missing field 'response'"),
                          ('{"prompt": "q", "response": 3}', "field 'response' must be a string"),
                          ('{"prompt": "q", "answer": "a"}', "missing field 'response'"),
                          ('{"prompt": "q", "chosen": "a"}', "missing field 'rejected'"),
                          ('{"prompt": "q", "response": ""}', "field 'response' is empty"),
                          ('[1]', "expected a JSON object"), ("{", "sft.jsonl:1: not a JSON")]:
        path.write_text(line + "\n")
        with pytest.raises(LmbenchError, match="sft.jsonl:1") as error:
            load_examples(path)
        assert message in str(error.value) and "\n" not in str(error.value)
    path.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q", "chosen": "a", '
                    '"rejected": "b"}\n')
    with pytest.raises(LmbenchError, match="sft.jsonl:2: a PreferencePair among Examples"):
        load_examples(path)
    with pytest.raises(LmbenchError, match="examples file not found"):
        load_examples(tmp_path / "none.jsonl")
