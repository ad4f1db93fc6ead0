"""Offline-first access to model hubs: never hang in retries when there is no network."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HELP = ("download it on a connected machine (huggingface-cli download {id} --local-dir DIR) and pass the folder "
         "path instead, or point HF_HOME at a cache that holds it")


def offline() -> bool:
    """True when the hub must not be contacted. Decided once: env vars first, then a 1.5 s connection probe."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS):
        return True
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=1.5):
            return False
    except OSError:
        log.info("huggingface.co is unreachable; switching to HF offline mode")
        set_offline()
        return True


def set_offline() -> None:
    for v in _OFFLINE_VARS:
        os.environ[v] = "1"
    try:  # huggingface_hub reads the env var at import; update its constant too if it is already imported
        import huggingface_hub.constants as c

        c.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover - huggingface_hub layout differs between versions
        pass


def offline_help(model_id: str) -> str:
    return _HELP.format(id=model_id)
