"""Checkpoints that cannot run code, know the data they were trained on, and carry any family's
state as plain tensors."""

from __future__ import annotations

import io
import pathlib
import pickle

import pytest
import torch
from torch.utils._pytree import tree_leaves

import lmbench
import lmbench.training.trainer as train_module
from lmbench.core.errors import LmbenchError
from lmbench.data.corpora import Corpus, _lines_split
from lmbench.models.seq2seq import Seq2SeqState

TRAIN = {"max_steps": 6, "batch_size": 2, "seq_len": 16, "eval_every": 3, "warmup_steps": 1,
         "eval_tokens": 100, "checkpoint_every": 3, "progress": False, "bf16": False}


def _gpt(**train):
    return lmbench.build_model("gpt", n_layer=1, n_head=2, n_embd=16, block_size=16,
                               train={**TRAIN, **train})


class Planted:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's, for the plain pickle
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_planted_pickle_never_runs(tiny_corpus, tmp_path, writer):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    payload = {"digest": "x", "net": Planted(marker)}
    if writer == "torch":
        torch.save(payload, checkpoint)
    else:
        checkpoint.write_bytes(pickle.dumps(payload))
    with pytest.raises(LmbenchError) as error:
        _gpt().fit(tiny_corpus, checkpoint_dir=checkpoint.parent)
    assert not marker.exists()
    message = str(error.value)
    assert str(checkpoint) in message and "without running code" in message
    assert "\n" not in message


def test_garbage_and_foreign_checkpoints_are_one_line_errors(tiny_corpus, tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint at all")
    with pytest.raises(LmbenchError, match="checkpoint.pt: not a checkpoint that loads"):
        _gpt().fit(tiny_corpus, checkpoint_dir=tmp_path)
    torch.save({"weights": torch.zeros(2)}, checkpoint)  # loads, but is not ours
    with pytest.raises(LmbenchError, match="not an lmbench training checkpoint"):
        _gpt().fit(tiny_corpus, checkpoint_dir=tmp_path)


def test_a_checkpoint_is_plain_tensors_and_refuses_other_data(tiny_corpus, tmp_path):
    _gpt().fit(tiny_corpus, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["log"]["steps"] == 6 and isinstance(saved["rng"], torch.Tensor)
    other = Corpus("other", {name: _lines_split(name, tiny_corpus.split(name).text[::-1])
                             for name in ("train", "valid", "test")})
    with pytest.raises(LmbenchError, match="checkpoint of other training data"):
        _gpt().fit(other, checkpoint_dir=tmp_path)


def test_a_carried_state_survives_a_checkpoint_as_tensors():
    tokens = torch.arange(6).view(2, 3)
    keys = [(torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4))]
    for state in [(torch.randn(1, 2, 4), torch.randn(1, 2, 4)), Seq2SeqState(tokens),
                  Seq2SeqState(tokens, keys, keys)]:
        payload = train_module._state_payload(state)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        buffer.seek(0)
        back = train_module._state_from_payload(torch.load(buffer, weights_only=True),
                                                torch.device("cpu"))
        assert type(back) is type(state)
        leaves, back_leaves = tree_leaves(state), tree_leaves(back)
        assert [type(a) for a in leaves] == [type(b) for b in back_leaves]
        assert all(torch.equal(a, b) for a, b in zip(leaves, back_leaves) if a is not None)

    class Opaque:
        pass

    with pytest.raises(LmbenchError, match="holds a Opaque, which a checkpoint cannot store"):
        train_module._state_payload({"h": Opaque()})


def test_seq2seq_resumes_with_its_carried_state(tiny_corpus, tmp_path, monkeypatch):
    def model():
        return lmbench.build_model("seq2seq", n_layer=1, n_head=2, n_embd=16, segment_len=8,
                                   train=TRAIN)

    whole = model().fit(tiny_corpus, checkpoint_dir=tmp_path / "a")
    save = train_module._save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        raise KeyboardInterrupt  # killed right after the step-3 checkpoint

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        model().fit(tiny_corpus, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(train_module, "_save_checkpoint", save)
    resumed = model().fit(tiny_corpus, checkpoint_dir=tmp_path / "b")
    for name, value in whole.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[name]), name
