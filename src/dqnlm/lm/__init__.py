"""Token-level Q-learning for causal language models (a client of :mod:`dqnlm.core`).

Needs the ``lm`` extra: ``pip install 'dqnlm[lm]'``.
"""
