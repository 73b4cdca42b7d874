"""Silencing transformers: a leaf module, so loading and pretraining share it without
importing each other."""

from __future__ import annotations

import contextlib
import io
import warnings


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load-time chatter (progress bars, hub retries) for one call."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
