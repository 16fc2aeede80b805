"""``run(config)``: fit every model of a run file on its corpus, score the splits, write results.

Each model's record goes to ``<out>/<run_id>/result.json`` (written atomically), so a crash or a
bad model later in the list never leaves a half-written record. The runner knows nothing about
families: it builds, fits and evaluates through the common interface.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from lmbench.config import RunConfig
from lmbench.data.corpora import load_corpus
from lmbench.evaluation.scoring import evaluate
from lmbench.models import build_model
from lmbench.results import RunResult, environment, write_json_atomic


def new_run_id(corpus: str, label: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe_label = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)
    return f"{corpus}-{safe_label}-{stamp}-{secrets.token_hex(3)}"


def seed_everything(seed: int) -> None:
    """Seed every generator a family may draw from, before it is built."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(config: RunConfig, out_dir: str | Path, save_models: bool = False, log=print
        ) -> list[RunResult]:
    """Fit and evaluate each model of ``config``; returns the records written under ``out_dir``."""
    out_dir = Path(out_dir)
    corpus = load_corpus(config.corpus, config.data_dir)
    for split in config.splits:
        corpus.split(split)  # fail before any training if a split is missing
    env = environment()
    results = []
    for spec in config.models:
        seed_everything(config.seed)
        model = build_model(spec.family, **spec.options)
        log(f"[{spec.label}] fitting on {corpus.name} train ...")
        started = time.perf_counter()
        model.fit(corpus, checkpoint_dir=out_dir / "checkpoints" / f"{corpus.name}-{spec.label}")
        fit_s = time.perf_counter() - started
        metrics = {split: evaluate(model, corpus, split, config.eval) for split in config.splits}
        run_id = new_run_id(corpus.name, spec.label)
        result = RunResult(
            run_id=run_id, model=spec.label, corpus=corpus.name,
            config={"family": spec.family, **model.config()}, seed=config.seed,
            n_params=model.n_params(), fit_s=fit_s, metrics=metrics, env=env,
            train_log=model.training_log(),
        )
        if save_models:
            model.save(out_dir / run_id / "model.npz")
        write_json_atomic(out_dir / run_id / "result.json", result.to_dict())
        shown = ", ".join(f"{s} ppl {m.perplexity:.2f}" for s, m in metrics.items())
        log(f"[{spec.label}] fit {fit_s:.1f}s; {shown}")
        results.append(result)
    return results
