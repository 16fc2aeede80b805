"""Small generated texts for tests (importable from any test folder)."""

from __future__ import annotations

import random


def _tiny_text(n_sentences: int, seed: int) -> str:
    """Sentences from a small grammar: varied enough for Kneser-Ney's counts of counts."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the old bird", "my friend", "the farmer", "a child", "she"]
    verbs = ["sat on", "looked at", "ate", "found", "walked to", "liked", "saw"]
    objects = ["the mat", "a fish", "the log", "the red barn", "a bone", "the river", "it"]
    tails = ["", " today", " again", " in the morning", " with care", " , slowly"]
    return "".join(
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(tails)} .\n"
        for _ in range(n_sentences)
    )
