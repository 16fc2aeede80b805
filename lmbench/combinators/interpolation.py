"""``interpolation``: a linear mixture of language models sharing one tokenizer.

    p(w | h) = Σ_k λ_k p_k(w | h),   λ_k >= 0,   Σ_k λ_k = 1

with the weights either given or estimated on the validation split by expectation-maximisation
(Jelinek & Mercer 1980, "Interpolated estimation of Markov source parameters from sparse data";
the EM update is Dempster, Laird & Rubin 1977 applied to a mixture):

    λ_k <- (1 / N) Σ_t λ_k p_k(w_t | h_t) / Σ_j λ_j p_j(w_t | h_t)

which never lowers the validation likelihood. Mixing a neural model with a Kneser-Ney n-gram is
the classic combination of the two ends of the ladder (Bengio et al. 2003, section 4, mixed
their MLP with an interpolated trigram; Mikolov et al. 2011, "Empirical evaluation and combination
of advanced language modeling techniques", with KN-5).

A component is either a saved model file (``lmbench`` ``.npz`` or ``.arpa``; already fitted,
``fit`` only estimates the weights) or an inline spec ``{family = "...", <options>}`` that
``fit`` trains on the corpus first. Every component must use the same tokenizer (same
vocabulary), so the mixture is a distribution over one vocabulary. The state is the tuple of
the components' states, each continued by its own family, so the mixture carries state from
window to window (``carries_state``) and the evaluator scores each token exactly once.
``n_params`` is the sum over components. Every component selects rows of its state
(``SelectsStateRows``), so the mixture does too and beam search batches its beams.

Devices: each component computes on its own device and the mixture brings their outputs to the
CPU, where it mixes (its ``device`` is the CPU). ``to(device)`` moves the components, and those
``fit`` builds or loads later, so a KN-5 + LSTM mixture trains its LSTM on the GPU.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmbench.core.device import resolve_device
from lmbench.core.errors import LmbenchError
from lmbench.core.interface import Budget, Capabilities, LanguageModel, SelectsStateRows
from lmbench.core.io import read_npz, write_npz_atomic
from lmbench.core.options import build_config
from lmbench.core.tokenizers import same_vocabulary
from lmbench.evaluation.scoring import EvalConfig, score_stream
from lmbench.models.catalog import build_model, load_model


@dataclass(frozen=True)
class InterpolationConfig:
    # saved model paths (str) or inline specs {family = ..., <options>}
    components: tuple[str | dict, ...] = ()
    weights: tuple[float, ...] = ()  # λ_k summing to 1; (): estimated by EM on the valid split
    em_iterations: int = 100  # at most; stops when no λ moves by more than em_tolerance
    em_tolerance: float = 1e-6
    window_len: int = 2048  # tokens per call when scoring the valid split for EM

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if len(self.components) < 2:
            raise LmbenchError("an interpolation needs at least 2 components, got "
                               f"{len(self.components)}")
        for component in self.components:
            if isinstance(component, dict):
                if not isinstance(component.get("family"), str):
                    raise LmbenchError(f"inline component {component!r} needs a 'family' string")
            elif not isinstance(component, str):
                raise LmbenchError(f"a component is a model file path or an inline "
                                   f"{{family = ...}} table, got {component!r}")
        if self.weights:
            if len(self.weights) != len(self.components):
                raise LmbenchError(f"weights has {len(self.weights)} values for "
                                   f"{len(self.components)} components")
            if min(self.weights) < 0 or abs(sum(self.weights) - 1) > 1e-6:
                raise LmbenchError(f"weights must be >= 0 and sum to 1, got {self.weights}")
        if self.em_iterations < 1 or not self.em_tolerance > 0:
            raise LmbenchError("em_iterations must be >= 1 and em_tolerance > 0")


def em_weights(nll: np.ndarray, iterations: int = 100, tolerance: float = 1e-6
               ) -> np.ndarray:
    """(K, N) NLL in nats of N held-out tokens under K models -> the K mixture weights that
    maximise the held-out likelihood (module docstring), starting from uniform."""
    log_p = -np.asarray(nll, dtype=np.float64)  # (K, N)
    weights = np.full(log_p.shape[0], 1.0 / log_p.shape[0])
    for _ in range(iterations):
        joint = np.log(np.maximum(weights, 1e-300))[:, None] + log_p  # (K, N)
        posterior = np.exp(joint - np.logaddexp.reduce(joint, axis=0))  # (K, N)
        updated = posterior.mean(axis=1)
        done = np.abs(updated - weights).max() < tolerance
        weights = updated
        if done:
            break
    return weights


class InterpolatedLM(LanguageModel, SelectsStateRows):
    """A weighted mixture of fitted models (module docstring)."""

    name = "interpolation"
    config_class = InterpolationConfig

    def __init__(self, config: InterpolationConfig | None = None, **options: Any) -> None:
        self.config_ = config or build_config(InterpolationConfig, options,
                                              "model 'interpolation'")
        self.components_: list[LanguageModel] | None = None
        self.weights_: np.ndarray | None = (np.array(self.config_.weights)
                                            if self.config_.weights else None)
        self.component_device_: torch.device | None = None  # None: leave components where built

    @classmethod
    def of(cls, models: list[LanguageModel], weights: list[float] | None = None
           ) -> InterpolatedLM:
        """A mixture of already fitted ``models``; ``weights=None`` leaves them to ``fit``
        (EM on the valid split) or ``fit_weights``."""
        config = InterpolationConfig(tuple(f"<{m.name}>" for m in models), tuple(weights or ()))
        model = cls(config)
        model._set_components(list(models))
        return model

    def _set_components(self, models: list[LanguageModel]) -> None:
        for model in models:
            if not isinstance(model, SelectsStateRows):
                raise LmbenchError(f"an interpolated model must select rows of its state "
                                   f"(SelectsStateRows, as every registered family does); "
                                   f"{model.name} does not")
        for other in models[1:]:
            if not same_vocabulary(models[0].tokenizer, other.tokenizer):
                raise LmbenchError(f"interpolated models must share one tokenizer: "
                                   f"{models[0].name} uses {models[0].tokenizer.name}, "
                                   f"{other.name} uses {other.tokenizer.name} (or another "
                                   f"vocabulary)")
        self.components_ = models

    # ------------------------------------------------------------------------------ fitting

    @property
    def tokenizer(self):
        return self._components()[0].tokenizer

    @property
    def capabilities(self) -> Capabilities:
        parts = [m.capabilities for m in self._components()]
        windows = [c.max_window for c in parts if c.max_window is not None]
        return Capabilities(exact_likelihood=all(c.exact_likelihood for c in parts),
                            max_context=None, max_window=min(windows) if windows else None,
                            carries_state=True)

    def to(self, device: str | torch.device) -> InterpolatedLM:
        """Move every component to ``device`` (each family where it can; module docstring),
        and the ones ``fit`` builds or loads later; the mixing stays on the CPU."""
        self.component_device_ = resolve_device(device)
        for model in self.components_ or ():
            model.to(self.component_device_)
        return self

    def _placed(self, model: LanguageModel) -> LanguageModel:
        return model if self.component_device_ is None else model.to(self.component_device_)

    def _components(self) -> list[LanguageModel]:
        if self.components_ is None:
            raise LmbenchError("the interpolation is not fitted; call fit(corpus) first")
        return self.components_

    def fit(self, corpus, *, valid: bool = True, budget: Budget | None = None,
            checkpoint_dir=None) -> InterpolatedLM:
        if self.components_ is None:
            models = []
            for k, component in enumerate(self.config_.components):
                if isinstance(component, dict):
                    options = {key: v for key, v in component.items() if key != "family"}
                    sub_dir = None if checkpoint_dir is None else Path(checkpoint_dir) / str(k)
                    models.append(self._placed(build_model(component["family"], **options)).fit(
                        corpus, valid=valid, budget=budget, checkpoint_dir=sub_dir))
                else:
                    models.append(self._placed(load_model(component)))
            self._set_components(models)
        if self.weights_ is None:
            if "valid" not in corpus.splits:
                raise LmbenchError(f"corpus {corpus.name!r} has no valid split to estimate the "
                                   "interpolation weights on; give weights = [...]")
            self.fit_weights(self.tokenizer.encode_split(corpus.split("valid")))
        return self

    def fit_weights(self, valid_ids: np.ndarray) -> np.ndarray:
        """Estimate λ by EM on (N,) held-out ids; returns and keeps them."""
        config = EvalConfig(window_len=self.config_.window_len, progress=False)
        nll = np.stack([score_stream(m, valid_ids, config) for m in self._components()])
        self.weights_ = em_weights(nll, self.config_.em_iterations, self.config_.em_tolerance)
        return self.weights_

    def _weights(self) -> np.ndarray:
        if self.weights_ is None:
            raise LmbenchError("the interpolation weights are not estimated; call fit first")
        return self.weights_

    # ------------------------------------------------------------------------------ scoring

    def _mix(self, call, state) -> tuple[torch.Tensor, tuple]:
        """logsumexp_k(ln λ_k + call(model_k, state_k)) over the components, where ``call``
        returns (log-probabilities (B, T[, V]), new state); and the tuple of new states."""
        models, log_w = self._components(), np.log(np.maximum(self._weights(), 1e-300))
        parts, new_states = [], []
        for model, part_state, lw in zip(models, state or (None,) * len(models), log_w,
                                         strict=True):
            logprob, new_state = call(model, part_state)
            parts.append(logprob.double().cpu() + float(lw))  # mixed on the CPU
            new_states.append(new_state)
        return torch.logsumexp(torch.stack(parts), dim=0), tuple(new_states)

    def token_logprobs(self, input_ids, target_ids, state=None):
        mixed, states = self._mix(  # (B, T)
            lambda model, s: model.token_logprobs(input_ids, target_ids, s), state)
        return torch.where(torch.as_tensor(target_ids).cpu() >= 0, mixed, 0.0), states

    def logits(self, input_ids, state=None):
        def log_probs(model, s):
            logits, new_state = model.logits(input_ids, s)  # (B, T, V)
            return torch.log_softmax(logits.double(), dim=-1), new_state

        mixed, states = self._mix(log_probs, state)  # (B, T, V)
        return mixed.float(), states

    def select_state(self, state, rows):
        """Each component's own selection of the rows (beam search)."""
        if state is None:
            return None
        return tuple(model.select_state(part, rows)
                     for model, part in zip(self._components(), state, strict=True))

    # -------------------------------------------------------------------------- bookkeeping

    def n_params(self) -> int:
        return int(sum(m.n_params() for m in self._components()))

    def config(self) -> dict[str, Any]:
        """The config with the weights in use (estimated ones included) and each component's
        family and config, so a record says exactly what was mixed."""
        weights = tuple(float(w) for w in self.weights_) if self.weights_ is not None else ()
        values = asdict(replace(self.config_, weights=weights))
        if self.components_ is not None:
            values["component_configs"] = [{"family": m.name, **m.config()}
                                           for m in self.components_]
        return values

    def training_log(self) -> dict | None:
        return None

    def save(self, path: str | Path) -> None:
        """One ``.npz``: each component's own saved file as bytes, and the weights."""
        arrays = {}
        with tempfile.TemporaryDirectory() as folder:
            for k, model in enumerate(self._components()):
                part = Path(folder) / f"{k}.npz"
                model.save(part)
                arrays[f"component/{k}"] = np.frombuffer(part.read_bytes(), dtype=np.uint8)
        config = replace(self.config_, weights=tuple(float(w) for w in self._weights()))
        write_npz_atomic(Path(path), arrays, {"family": self.name, "config": asdict(config)})

    @classmethod
    def load(cls, path: str | Path) -> InterpolatedLM:
        meta, arrays = read_npz(Path(path), "an interpolation model")
        model = cls(build_config(InterpolationConfig, meta["config"], str(path)))
        models = []
        with tempfile.TemporaryDirectory() as folder:
            for k in range(sum(1 for key in arrays if key.startswith("component/"))):
                part = Path(folder) / f"{k}.npz"
                part.write_bytes(arrays[f"component/{k}"].tobytes())
                models.append(load_model(part))
        model._set_components(models)
        return model


def perplexity_of_mixture(nll: np.ndarray, weights: np.ndarray) -> float:
    """exp of the mean NLL of the mixture of (K, N) per-token NLLs with (K,) weights."""
    log_p = np.log(np.maximum(weights, 1e-300))[:, None] - np.asarray(nll)
    return math.exp(-float(np.logaddexp.reduce(log_p, axis=0).mean()))

