"""The one interface every model family implements: ids in, natural-log probabilities out.

A model owns its tokenizer. Text meets the model only at ``fit`` (through a ``Corpus``) and at
the edges of generation; everything in between is int64 token ids in batch-first tensors.

Three methods carry the maths (B = batch, T = time, V = vocabulary):

``token_logprobs(input_ids, target_ids, state)``
    ``(B, T)`` ids -> ``(B, T)`` float64 ``log p(target[b, t] | context)`` in nats, where the
    context is ``input_ids[b, :t+1]`` preceded by whatever ``state`` carries. Targets equal to
    ``-1`` are ignored and get ``0.0``. In a stream, ``input_ids`` is the stream shifted right by
    one with the tokenizer's ``boundary_id`` in front, so the first token is predicted after the
    boundary (for word models after ``</s>``, i.e. at the start of a sentence).

``logits(input_ids, state)``
    ``(B, T)`` new ids continuing from ``state`` -> ``(B, T, V)`` next-token scores whose
    ``log_softmax`` is the model's next-token distribution, and the new state. ``state`` is
    opaque: the n-gram history, an RNN's hidden state, a Transformer's KV cache.
    ``logits(x[:, :k], None)`` followed by ``logits(x[:, k:], state)`` equals ``logits(x, None)``.
    A call never modifies the state it is given (beam search reuses a parent's state).

``fit(corpus, *, valid=..., budget=..., checkpoint_dir=...)``
    Fits the tokenizer on the training split (unless already fitted) and then the model.

The ``Capabilities`` tell the evaluator how to window a long stream without asking which
family it holds; see ``lmbench.evaluation.scoring.plan_windows``.

Optional abilities are classes a family inherits (end of this module): ``Trainable`` (one torch
network), ``SelectsStateRows`` (batched beam search), ``Embeds``, ``CountsFlops``,
``RollsBackState`` (speculative decoding), ``EstimatesSize``, ``ComputesHidden`` (the forward
pass split at the final hidden states), ``AdaptsLayers`` (what ``lmbench.peft`` adapts) and
``StartsFromEmbeddings`` / ``StartsFromKeyValues`` (a stream starting from a learned state:
prompt and prefix tuning).
Generic code asks ``isinstance(model, Embeds)``.

Devices. A model computes on one ``device`` (a ``torch.device``: the CPU unless ``to(device)``
moved it; names as in ``lmbench.core.device``). Ids, targets and the ``rows`` of
``select_state`` may come on any device: the model moves them to its own. What a model returns
(log-probabilities, logits, ``embed`` features, the state) lives on ``model.device``; generic
code that needs host numbers calls ``.cpu()`` itself (the evaluator, once per batch; sampling
draws on the CPU, so a seed gives the same draw on any device). Count-based families,
``FunctionLM`` and the combinators compute on the CPU: ``to`` checks the name and leaves
``device`` at ``cpu`` (a combinator's moves its components), so one run file with
``device = "cuda"`` moves only the families that can use it. ``load``
always returns a model on the CPU (a saved model loads anywhere); the caller moves it, and
``to`` before ``fit`` chooses where training runs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lmbench.core.device import resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.tokenizers import Tokenizer

if TYPE_CHECKING:  # the trainer and the objectives import this module
    from lmbench.training.objectives import Objective
    from lmbench.training.trainer import TrainConfig

State = Any  # opaque per-family incremental state; None means "start of a stream"


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, so generic code never branches on its family."""

    exact_likelihood: bool = True  # False: pseudo-likelihood (masked LMs); never ranked as PPL
    max_context: int | None = None  # tokens of left context that can matter; None: unbounded
    max_window: int | None = None  # longest T one call accepts; None: any length
    carries_state: bool = False  # scoring passes `state` from window to window (RNNs)


@dataclass(frozen=True)
class Budget:
    """How much training a model may spend; any field left None is not a limit."""

    max_steps: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_tokens", "max_seconds"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:  # NaN fails too
                raise LmbenchError(f"budget {name} must be > 0 (and finite), got {value!r}; "
                                   "leave it unset for no limit")


class LanguageModel(ABC):
    """Base class of every family. Subclasses set ``name``, ``tokenizer`` and ``capabilities``."""

    name: str
    tokenizer: Tokenizer
    capabilities: Capabilities

    @abstractmethod
    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir: str | Path | None = None) -> LanguageModel:
        """Fit on ``corpus.train`` (and use ``corpus.valid`` for early stopping where the family
        trains iteratively and ``valid`` is true). ``budget`` overrides the family's own training
        limits; with ``checkpoint_dir`` an iterative family saves checkpoints there and resumes
        from the last one. Returns ``self``."""

    @abstractmethod
    def token_logprobs(
        self, input_ids: torch.Tensor, target_ids: torch.Tensor, state: State = None
    ) -> tuple[torch.Tensor, State]:
        """``(B, T)`` inputs and targets -> ``(B, T)`` float64 log-probabilities (nats) and the
        state after the last input. See the module docstring for the exact conditioning."""

    @abstractmethod
    def logits(self, input_ids: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        """``(B, T)`` new ids -> ``(B, T, V)`` next-token logits and the new state."""

    @abstractmethod
    def n_params(self) -> int:
        """Trainable parameters, or stored probabilities and backoffs for count-based models."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The resolved constructor arguments, JSON-serialisable (recorded in every result)."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write everything needed to rebuild the fitted model (tokenizer included)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> LanguageModel: ...

    def training_log(self) -> dict | None:
        """What iterative training did (steps, tokens, seconds, the curve); None if nothing."""
        return None

    @classmethod
    def notes(cls) -> dict[str, str]:
        """Explanations of this family's results that look like bugs and are not, keyed
        ``"option=value"`` (``"smoothing=witten-bell"``): ``lmbench models`` prints them, and a
        leaderboard prints, under its table, those whose option value one of its rows has."""
        return {}

    @property
    def family(self) -> str:
        """The family the model belongs to in results (``config["family"]``): its ``name``
        unless the class says otherwise (an adapter names the wrapped model freely)."""
        return self.name

    @property
    def device(self) -> torch.device:
        """Where the model computes and where its outputs and state live (module docstring)."""
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> LanguageModel:
        """Compute on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``)
        from now on, where the family can; before ``fit``, train there. Returns ``self``.

        The default is a CPU-native model's: it checks the name (an unknown or absent device
        raises ``LmbenchError``) and keeps computing on the CPU."""
        resolve_device(device)
        return self

    # Free helpers built on the three methods -------------------------------------------------

    def next_token_logprobs(self, context_ids: list[int]) -> np.ndarray:
        """The (V,) next-token log-distribution after ``context_ids`` (boundary prepended)."""
        ids = torch.tensor([[self.tokenizer.boundary_id, *context_ids]], dtype=torch.long)
        scores, _ = self.logits(ids)
        return torch.log_softmax(scores[0, -1].double(), dim=-1).cpu().numpy()


# Optional abilities ---------------------------------------------------------------------------
#
# A family declares an optional ability by inheriting one of these classes in its own file;
# generic code asks ``isinstance(model, Trainable)`` (never ``getattr(model, "net")``,
# ``hasattr`` or a try/except probe). Each class states its contract once, here.


class Trainable(ABC):
    """Weights in one ``torch.nn.Module``, trained by ``lmbench.training`` and adaptable by
    ``lmbench.peft``; log-probabilities with gradients for objectives written once for every
    torch family (preference and policy losses). Its ``fit`` also takes ``init`` (a saved model
    of the same family and architecture to warm-start from) and ``objective`` (a value of
    ``lmbench.training.objectives``; default the family's own)."""

    @abstractmethod
    def network(self) -> torch.nn.Module:
        """The fitted network (an error naming the model if it is not fitted)."""

    @abstractmethod
    def forward_logits(self, input_ids: torch.Tensor, state: State = None
                       ) -> tuple[torch.Tensor, State]:
        """Like ``logits`` but keeping the autograd graph and the network's current mode
        (train or eval): ``(B, T)`` ids -> ``(B, T, V)`` logits with gradients, new state."""

    @abstractmethod
    def train_config(self) -> TrainConfig:
        """The training settings ``fit`` trains the network with."""

    @abstractmethod
    def with_train_config(self, config: TrainConfig) -> LanguageModel:
        """A new, unfitted model of the same family and settings (sharing this model's
        tokenizer) that ``fit`` trains with ``config``; an ``LmbenchError`` if the model cannot
        be trained again (a quantized copy)."""

    def auxiliary_loss(self) -> torch.Tensor | float:
        """Extra training loss from the last forward pass, added by the objectives (a router's
        balance and z-loss); 0 unless a family says otherwise."""
        return 0.0


class SelectsStateRows(ABC):
    """The state of some rows of a batch can be taken (batched beam search,
    ``lmbench.inference.decoding``, continues every surviving beam from its parent in one call;
    for a model without it, each beam is extended in a call of its own)."""

    @abstractmethod
    def select_state(self, state: State, rows: torch.Tensor) -> State:
        """The state of the batch rows ``rows`` of ``state``, as a state of ``len(rows)`` rows.

        ``rows`` is a (B',) int64 tensor of indices into the batch ``state`` was returned for;
        an index may repeat (two beams continuing one parent) or be left out. Continuing the
        result with (B', T) ids gives, row by row, what continuing row ``rows[i]`` alone would
        give. ``None`` (the start of a stream) selects to ``None``. Like ``logits``, it never
        modifies ``state``."""


class Embeds(ABC):
    """One feature vector per sequence (MAUVE's features, reward-model heads)."""

    @abstractmethod
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids -> ``(B, D)`` float32 features."""


class CountsFlops(ABC):
    """An analytic count of forward FLOPs per token (for utilisation against the peak)."""

    @abstractmethod
    def flops_per_token(self, context_len: float | None = None) -> float:
        """Forward FLOPs for one token attending to ``context_len`` earlier tokens."""


class RollsBackState(ABC):
    """A state can be cut back to an earlier length without recomputation (speculative
    decoding rejects drafted tokens by cutting the target's KV cache)."""

    @abstractmethod
    def state_length(self, state: State) -> int:
        """Tokens the state covers (0 for ``None``)."""

    @abstractmethod
    def rollback_state(self, state: State, length: int) -> State:
        """The state after only the first ``length`` tokens of those ``state`` covers; a new
        state (``state`` is unchanged)."""


class EstimatesSize(ABC):
    """Its parameter count follows from its config before any weight exists, so an absurd size
    (``n_layer = 10000``) is refused before building or training (``lmbench.core.limits``)."""

    @abstractmethod
    def estimated_n_params(self, vocab_size: int | None = None) -> int:
        """Parameters of the network for ``vocab_size`` tokens (None: the fitted tokenizer's
        vocabulary, or a lower bound before the tokenizer is fitted); allocates no weights."""


class ComputesHidden(ABC):
    """The forward pass in two declared stages: ids -> final hidden states -> logits, so heads
    (a reward model's scalar, PPO's value) and PEFT methods can work on the hidden states."""

    @property
    @abstractmethod
    def hidden_size(self) -> int: ...

    @abstractmethod
    def forward_hidden(self, input_ids: torch.Tensor, state: State = None
                       ) -> tuple[torch.Tensor, State]:
        """(B, T) ids -> (B, T, H) final hidden states (after the final norm, what the output
        layer reads), with gradients and the network's current mode, and the new state."""

    @abstractmethod
    def logits_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, V); logits_from_hidden(forward_hidden(x, s)[0]) equals
        forward_logits(x, s)[0]."""


@dataclass(frozen=True)
class AdaptableWeight:
    """One weight a PEFT method (``lmbench.peft``) may adapt, named by where it is in
    ``network()``. ``kind``: ``"linear"``, the ``weight`` (d_out, d_in) of the ``nn.Linear``
    ``module``, of which only the output ``rows`` [start, stop) are adapted when given (one
    projection of a fused q/k/v layer); ``"matrix"``, a 2-D (d_out, d_in) parameter
    ``parameter`` of ``module`` used as W x inside it (a fused recurrent cell's
    ``weight_hh_l0``); ``"experts"``, a 3-D (E, d_in, d_out) parameter used as bmm(x, W)."""

    module: str
    kind: str = "linear"
    parameter: str = "weight"
    rows: tuple[int, int] | None = None


class AdaptsLayers(ABC):
    """What parameter-efficient fine-tuning (``lmbench.peft``) adapts, as the family names it:
    its weights by role (LoRA), the sublayers adapters follow, and the objective fine-tuning
    optimises. Names are paths in ``network()``, known from the config alone."""

    @abstractmethod
    def adaptable_weights(self) -> dict[str, tuple[AdaptableWeight, ...]]:
        """Role (``"q"``, ``"v"``, ``"mlp"``, ``"recurrent"``, ...) -> the weights of that role,
        every layer's. A tied embedding or output layer is never among them."""

    @abstractmethod
    def default_adapted_roles(self) -> tuple[str, ...]:
        """The roles adapted when none are named (Hu et al. 2021: the attention's q and v)."""

    @abstractmethod
    def adapter_sublayers(self) -> dict[str, int]:
        """Module path -> the width of its output, for each sublayer an adapter follows (Houlsby
        et al. 2019: each attention and feed-forward sublayer, before its residual sum). The
        module returns a (..., width) tensor, or a tuple whose first element is one."""

    @abstractmethod
    def default_objective(self) -> Objective:
        """What fine-tuning optimises: the family's own training objective."""


class StartsStreams(ABC):
    """Every stream can begin from a given state instead of nothing: ``start_streams(start)``
    makes each call that gets state ``None`` (scoring, generation, the training objective's
    direct calls of ``network()``) continue from ``start(batch_size)``, a state the family's
    own code builds (prompt and prefix tuning, ``lmbench.peft``). The start lives in
    ``network()``, so a deep copy of the model or of its network keeps it."""

    @abstractmethod
    def start_streams(self, start: Callable[[int], State] | None) -> None:
        """From now on a stream starts from ``start(B)`` (a state of B rows, built with the
        network's current mode and gradients); ``None``: from nothing again."""


class StartsFromEmbeddings(StartsStreams):
    """A stream can begin with input embeddings in place of token ids (prompt tuning, Lester et
    al. 2021): P vectors of the input embedding's width read like P tokens."""

    @abstractmethod
    def input_embedding_weight(self) -> torch.Tensor:
        """The (V, E) token embedding matrix the network reads ids through."""

    @abstractmethod
    def state_from_embeddings(self, embeddings: torch.Tensor, state: State = None) -> State:
        """(B, P, E) input embeddings read after ``state`` -> the state after them (with
        gradients, in the network's current mode); P positions of a bounded context are
        used up."""


class StartsFromKeyValues(StartsStreams):
    """A stream can begin from given keys and values in every attention layer, as if P earlier
    positions had produced them (prefix tuning, Li & Liang 2021); every later token attends to
    all of them."""

    @abstractmethod
    def attention_shape(self) -> tuple[int, int, int]:
        """(n_layer, n_head, head_dim) of the attention layers' keys and values."""

    @abstractmethod
    def state_from_key_values(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> State:
        """Per layer (keys, values), each (B, n_head, P, head_dim) -> the state of a stream
        after those P positions (no token ids)."""
