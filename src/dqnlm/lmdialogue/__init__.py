"""Language-model dialogue agents: a causal LM speaks every agent turn against the user
simulator and learns by multi-turn token-level Q-learning (a client of lm and dialogue)."""
