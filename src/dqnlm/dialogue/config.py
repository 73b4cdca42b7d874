"""The dialogue environment's configuration: every field with its meaning and unit."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from dqnlm.config_io import Checks

MAX_TURNS = 1000
"""Utterances per dialogue at most: the state one-hot codes the turn, so its size grows
with max_turns, and no task-oriented dialogue runs to a thousand utterances."""


@dataclass(frozen=True)
class DialogueConfig:
    domain: str = "movie"
    """A bundled domain name, or the path of a schema file (.json, or .yaml with PyYAML)."""
    split: str = "train"
    """The goals reset() draws from: train, or test (held out)."""
    max_turns: int = 40
    """Utterances per dialogue, both sides counted, the user's opening included (TC-Bot's
    max_turn). Also L in the rewards: +2L success, -L failure, -1 per other agent turn."""
    slot_error_rate: float = 0.0
    """Probability that each slot value the user states reaches the agent as another value."""
    intent_error_rate: float = 0.0
    """Probability that the user's intent reaches the agent as another act."""
    text_level: bool = False
    """The agent hears the user's words: each user act goes through the NLG to text and
    back through the NLU, and the tracker sees what the NLU understood."""

    def checks(self) -> Checks:
        """This environment's invalid values."""
        check = Checks(self)
        check.one_of("split", ("train", "test"))
        check.within(3, MAX_TURNS, "max_turns")
        check.within(0, 1, "slot_error_rate intent_error_rate")
        return check

    def validate(self) -> DialogueConfig:
        return self.checks().done("dialogue config")


MAX_DIALOGUES = 100_000_000
"""Training dialogues at most, warm start included (the default run needs 13,000)."""
DIALOGUES_PER_SECOND = 75
"""Training speed on one CPU thread (13,000 dialogues in 173 s, docs/benchmarks-dialogue.md),
for the time estimate of a refused run."""
MAX_EVAL_DIALOGUES = 1_000_000
"""Dialogues per evaluation at most: the success rate's standard error is already < 0.0005."""
RULE_EVAL_SEED = 2_000_006
"""First dialogue seed of `dqnlm dialogue eval rule` (a trained run uses its test stream)."""


@dataclass(frozen=True)
class DialogueDQNConfig:
    """A DQN dialogue policy run (TC-Bot's agent_dqn on the core): every field with its unit."""

    # environment
    domain: str = "movie"
    """A bundled domain (movie, restaurant) or the path of a schema file."""
    seed: int = 0
    """Run seed in [0, 2**32 - 1]: the network, exploration, replay sampling, training,
    validation and test dialogues each get an independent stream (dqnlm.seeding)."""
    max_turns: int = 40
    """Utterances per dialogue, both sides counted (L in the rewards +2L / -L / -1)."""
    slot_error_rate: float = 0.0
    """User-simulator noise while training: chance that a stated slot value is swapped."""
    intent_error_rate: float = 0.0
    """User-simulator noise while training: chance that the user's intent is swapped."""
    text_level: bool = False
    """Train on the user's words: user acts go through NLG text and back through the NLU."""
    # budget
    epochs: int = 120
    """Training epochs; each simulates ``dialogues_per_epoch`` dialogues, then logs (and
    every ``eval_interval`` epochs validates)."""
    dialogues_per_epoch: int = 100
    """Epsilon-greedy training dialogues per epoch."""
    warm_start_dialogues: int = 1000
    """Rule-agent dialogues that fill the replay before learning (part of the dialogue budget)."""
    # network and acting
    hidden_sizes: tuple[int, ...] = (128,)
    """Hidden layer widths of the MLP Q-network."""
    action_mask: bool = True
    """Rule out pointless actions (asking for a slot the user has stated) when acting and bootstrapping."""
    exploration_initial_eps: float = 0.3
    """Epsilon at the first training dialogue (after the warm start)."""
    exploration_final_eps: float = 0.0
    """Epsilon after the decay."""
    exploration_fraction: float = 0.5
    """Fraction of the training dialogues over which epsilon decays linearly."""
    # TD learning
    gamma: float = 0.95
    """Discount per agent turn."""
    double_dqn: bool = True
    """Double DQN targets: the online net picks the next action, the target net values it."""
    reward_scale: float = 0.025
    """Rewards are multiplied by this for learning (0.025 = 1/L at L=40 keeps Q near [-1, 2])."""
    loss: str = "huber"
    """TD loss: huber or mse."""
    learning_rate: float = 5e-4
    """Adam step size."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (0: no clipping)."""
    batch_size: int = 32
    """Transitions per gradient update."""
    buffer_size: int = 50_000
    """Replay capacity in transitions (agent turns)."""
    train_freq: int = 1
    """Agent turns between gradient updates."""
    target_update: str = "hard"
    """Target-network rule: hard (copy), polyak (soft average), or none (bootstrap from the
    online network)."""
    target_update_period: int = 1_000
    """Gradient updates between target updates (hard copies or polyak averages). 1,000 is
    about one epoch of 100 dialogues at 7-10 agent turns each: TC-Bot's copy per epoch."""
    tau: float = 0.01
    """Polyak coefficient in (0, 1] per target update: target <- (1 - tau) target + tau
    online. Ignored by hard."""
    # evaluation and outputs
    eval_interval: int = 5
    """Epochs between greedy evaluations on training goals (validation; test goals stay unseen)."""
    eval_episodes: int = 240
    """Dialogues per validation evaluation."""
    keep_best: bool = True
    """The saved policy is the one with the best validation success, not the last."""
    test_episodes: int = 0
    """Dialogues in the final held-out evaluation (0: every test goal once)."""
    checkpoint_interval: int = 10
    """Epochs between resumable checkpoints."""
    device: str = "cpu"
    """cpu, cuda or auto (small MLPs run fastest on the CPU)."""

    def env_config(self, split: str = "train") -> DialogueConfig:
        """The environment of this run on ``split`` goals: every other field is the run's."""
        names = [f.name for f in fields(DialogueConfig) if f.name != "split"]
        return DialogueConfig(split=split, **{name: getattr(self, name) for name in names})

    @property
    def total_dialogues(self) -> int:
        return self.warm_start_dialogues + self.epochs * self.dialogues_per_epoch

    def validate(self) -> DialogueDQNConfig:
        """Return self, or raise ConfigError listing every invalid field."""
        check = Checks(self)
        check.problems += self.env_config().checks().problems
        check.seed()
        check.at_least(
            1, "epochs dialogues_per_epoch batch_size buffer_size train_freq eval_interval "
            "eval_episodes checkpoint_interval",
        )  # fmt: skip
        check.at_least(0, "warm_start_dialogues test_episodes")
        for name in ("eval_episodes", "test_episodes"):
            value = getattr(self, name)
            check.need(
                value <= MAX_EVAL_DIALOGUES,
                f"{name} must be <= {MAX_EVAL_DIALOGUES:,}, got {value:,}",
            )
        if self.total_dialogues > MAX_DIALOGUES:
            days = self.total_dialogues / DIALOGUES_PER_SECOND / 86_400
            check.need(
                False,
                f"warm_start_dialogues + epochs x dialogues_per_epoch = "
                f"{self.total_dialogues:,} training dialogues (about {days:,.0f} days); "
                f"at most {MAX_DIALOGUES:,}",
            )
        check.need(
            bool(self.hidden_sizes) and min(self.hidden_sizes) >= 1,
            f"hidden_sizes must be positive widths, got {list(self.hidden_sizes)}",
        )
        check.within(0, 1, "exploration_initial_eps exploration_final_eps exploration_fraction")
        check.within(0, 1, "gamma", open_low=True)
        check.positive("reward_scale learning_rate")
        norm = self.max_grad_norm  # NaN and inf fail too
        check.need(0 <= norm < math.inf, f"max_grad_norm must be >= 0, got {norm}")
        check.one_of("loss", ("huber", "mse"))
        check.target_network()
        check.device()
        return check.done("dialogue DQN config")
