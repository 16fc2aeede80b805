"""The ``bert`` family: pseudo-log-likelihood against a direct loop, masking, training, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lmbench.models.bert  # noqa: F401  (registers "bert")
from lmbench.inference.sampling import generate
from lmbench.models import load_model
from lmbench.models.bert import BertConfig, MaskedLM, corrupt
from lmbench.training.trainer import TrainConfig

TINY_TRAIN = {"max_steps": 60, "batch_size": 16, "seq_len": 31, "warmup_steps": 5,
              "learning_rate": 1e-2, "eval_every": 1000, "eval_tokens": 200, "bf16": False,
              "progress": False}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _untrained(corpus, block_size=32, **options) -> MaskedLM:
    """A tiny model with a fitted tokenizer and random weights (seeded)."""
    config = BertConfig(n_layer=2, n_head=2, n_embd=16, block_size=block_size,
                        train=TrainConfig(seq_len=block_size), **options)
    model = MaskedLM(config)
    model.tokenizer.fit(corpus.train)
    torch.manual_seed(0)
    model.net = model.build_network(model.tokenizer.vocab_size).eval()
    return model


def _window(model, corpus, length):
    """(1, T) inputs and targets of the test split, as the evaluator builds them."""
    ids = torch.from_numpy(model.tokenizer.encode_split(corpus.split("test"))[:length])
    inputs = torch.cat((torch.tensor([model.tokenizer.boundary_id]), ids[:-1]))
    return inputs[None], ids[None]


def _direct_pll(model, inputs, targets):
    """One forward pass per target, masks written by hand (PLL-word-l2r for bpe pieces)."""
    net, mask_id = model.net, model.net.mask_id
    window = [int(inputs[0, 0]), *targets[0].tolist()]
    strings = None
    if model.tokenizer.name == "bpe":
        strings = [model.tokenizer._hf.id_to_token(i) for i in window]

    def starts_word(q):
        if strings is None or q == 0 or window[q - 1] == model.tokenizer.boundary_id:
            return True
        return strings[q].startswith(("Ġ", "Ċ")) or strings[q - 1].endswith("Ċ")

    expected, n_continued = [], 0
    for p in range(1, len(window)):
        masked = list(window)
        masked[p] = mask_id
        q = p + 1
        while q < len(window) and not starts_word(q):
            masked[q], q, n_continued = mask_id, q + 1, n_continued + 1
        with torch.no_grad():
            logits = net(torch.tensor([masked]))[0, p]
        expected.append(torch.log_softmax(logits.double(), -1)[window[p]])
    return torch.stack(expected), n_continued


@pytest.mark.parametrize("tokenizer, options", [("char", {}), ("bpe", {"vocab_size": 300})])
def test_pll_equals_a_direct_loop_over_masked_positions(tiny_corpus, tokenizer, options):
    model = _untrained(tiny_corpus, tokenizer=tokenizer, tokenizer_options=options)
    inputs, targets = _window(model, tiny_corpus, 24)
    scores, _ = model.token_logprobs(inputs, targets)
    expected, n_continued = _direct_pll(model, inputs, targets)
    assert torch.allclose(scores[0], expected, atol=1e-5)
    if tokenizer == "bpe":
        assert n_continued > 0  # the window has multi-piece words, so word-l2r was exercised


def test_chunked_scoring_equals_one_pass(tiny_corpus):
    model = _untrained(tiny_corpus)
    inputs, targets = _window(model, tiny_corpus, 32)
    whole, _ = model.token_logprobs(inputs, targets)
    model.score_chunk_tokens = 1  # one masked copy per forward pass
    chunked, _ = model.token_logprobs(inputs, targets)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_padding_and_ignored_targets_do_not_change_a_row(tiny_corpus):
    """A short window padded as ``score_stream`` pads it scores as it does alone, and ignored
    targets are context: only the scored ones get non-zero terms."""
    model = _untrained(tiny_corpus, block_size=16)
    inputs, targets = _window(model, tiny_corpus, 16)
    short_in, short_tg = inputs[:, 3:13].clone(), targets[:, 3:13].clone()
    short_tg[:, :4] = -1  # context, as in every window after the first
    alone, _ = model.token_logprobs(short_in, short_tg)
    padded_in = torch.full((1, 16), model.tokenizer.boundary_id)
    padded_tg = torch.full((1, 16), -1)
    padded_in[:, :10], padded_tg[:, :10] = short_in, short_tg
    batch, _ = model.token_logprobs(torch.cat((inputs, padded_in)), torch.cat((targets, padded_tg)))
    assert torch.allclose(batch[1, :10], alone[0], atol=1e-5)
    assert (batch[1, 10:] == 0).all() and (alone[0, :4] == 0).all() and (alone[0, 4:] < 0).all()
    full, _ = model.token_logprobs(inputs, targets)  # T = block_size: inputs[:, 0] is cropped
    assert torch.allclose(batch[0], full[0], atol=1e-5)


def test_state_is_left_context(tiny_corpus):
    """Scoring the second half with the first half's state sees what one call over the whole
    window sees (the first half's scores differ: they lose their right context)."""
    model = _untrained(tiny_corpus, tokenizer="bpe", tokenizer_options={"vocab_size": 300})
    inputs, targets = _window(model, tiny_corpus, 32)  # T = block_size: cropping happens too
    whole, _ = model.token_logprobs(inputs, targets)
    first, state = model.token_logprobs(inputs[:, :13], targets[:, :13])
    second, _ = model.token_logprobs(inputs[:, 13:], targets[:, 13:], state)
    assert torch.allclose(whole[:, 13:], second, atol=1e-5)
    assert not torch.allclose(whole[:, :13], first, atol=1e-5)


def test_masking_chooses_15_percent_split_80_10_10():
    V = 1000
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (1000, 1000), generator=generator)
    corrupted, chosen = corrupt(ids, V, 0.15, torch.Generator().manual_seed(1))
    n_chosen = chosen.sum().item()
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.002)
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    masked = (corrupted == V) & chosen
    kept = (corrupted == ids) & chosen
    randomised = chosen & ~masked & ~kept
    assert masked.sum().item() / n_chosen == pytest.approx(0.8, abs=0.005)
    assert kept.sum().item() / n_chosen == pytest.approx(0.1 + 0.1 / V, abs=0.005)
    assert randomised.sum().item() / n_chosen == pytest.approx(0.1 * (1 - 1 / V), abs=0.005)
    assert (corrupted[randomised] < V).all()
    again, _ = corrupt(ids, V, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again, corrupted)


def test_training_lowers_the_masked_loss(tiny_corpus):
    model = MaskedLM(n_layer=1, n_head=2, n_embd=32, block_size=32, train=TINY_TRAIN)
    model.tokenizer.fit(tiny_corpus.train)
    ids = model.tokenizer.encode_split(tiny_corpus.train)
    starts = np.random.default_rng(0).integers(0, len(ids) - 33, 32)
    window = torch.from_numpy(np.stack([ids[s : s + 33] for s in starts]))  # (32, 33)

    def masked_loss(net):
        torch.manual_seed(123)  # the same masks before and after training
        with torch.no_grad():
            return model.training_loss(net.eval(), window[:, :-1], window[:, 1:])[0].item()

    torch.manual_seed(model.config_.train.seed)  # fit_ids starts from these weights
    before = masked_loss(model.build_network(model.tokenizer.vocab_size))
    model.fit(tiny_corpus)
    after = masked_loss(model.net)
    # ~log V at the start; 60 steps reach about the unigram entropy (context comes later)
    assert after < before - 0.3, (before, after)
    assert model.training_log()["steps"] == 60
    assert model.training_log()["best_valid_nats"] is not None  # the evaluator ran PLL on valid


def test_logits_with_state_equals_one_call_and_a_direct_mask(tiny_corpus):
    model = _untrained(tiny_corpus, block_size=8)
    ids = torch.from_numpy(model.tokenizer.encode_split(tiny_corpus.split("test"))[:40])
    ids = torch.stack((ids[:20], ids[20:]))  # (2, 20): prefixes outgrow the block
    whole, state = model.logits(ids)
    assert whole.shape == (2, 20, model.tokenizer.vocab_size) and state.shape == (2, 7)
    pieces, state = [], None
    for chunk in (ids[:, :5], ids[:, 5:6], ids[:, 6:]):
        logits, state = model.logits(chunk, state)
        pieces.append(logits)
    assert torch.allclose(torch.cat(pieces, 1), whole, atol=1e-5)
    for t in (2, 15):  # a short prefix, and one cropped to block_size - 1 = 7 ids
        prefix = ids[:, : t + 1][:, -7:]
        masked = torch.cat((prefix, torch.full((2, 1), model.net.mask_id)), 1)
        with torch.no_grad():
            direct = model.net(masked)[:, -1]
        assert torch.allclose(whole[:, t], direct, atol=1e-5)
    first = generate(model, ids[0, :3].tolist(), 12, seed=1)
    assert first == generate(model, ids[0, :3].tolist(), 12, seed=1) and len(first) == 12


def test_save_and_load_round_trip(tiny_corpus, tmp_path):
    model = _untrained(tiny_corpus, tokenizer="bpe", tokenizer_options={"vocab_size": 300})
    model.save(tmp_path / "bert.npz")
    same = load_model(tmp_path / "bert.npz")
    assert isinstance(same, MaskedLM) and same.config() == model.config()
    inputs, targets = _window(model, tiny_corpus, 32)
    assert torch.equal(model.token_logprobs(inputs, targets)[0],
                       same.token_logprobs(inputs, targets)[0])
    capabilities = same.capabilities
    assert not capabilities.exact_likelihood
    assert (capabilities.max_context, capabilities.max_window) == (16, 32)
