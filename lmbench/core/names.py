"""Names that become paths: run ids and folder names, made in one place."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone


def new_run_id(corpus: str, label: str) -> str:
    """``<corpus>-<label>-<UTC time>-<6 hex>``, with characters other than letters, digits and
    ``-_.=`` in the label replaced by ``_``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe_label = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in label)
    return f"{corpus}-{safe_label}-{stamp}-{secrets.token_hex(3)}"
