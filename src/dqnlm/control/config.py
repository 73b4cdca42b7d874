"""The DQN configuration: every hyperparameter, its meaning and its unit.

Step counts are **environment steps summed over all environments** (with
``n_envs = 8``, one vector step is 8 env steps), except the target-network
period, which counts **gradient updates**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dqnlm.config_io import Checks
from dqnlm.core.losses import LOSS_KINDS
from dqnlm.core.networks import CONV_KINDS, NATURE_MIN_SIZE

NETWORKS = ("auto", "mlp", *CONV_KINDS)

LIMITS = {
    "total_steps": 10_000_000_000,
    "n_envs": 1024,
    "eval_episodes": 100_000,
    "final_eval_episodes": 100_000,
}
"""Upper bounds on counts, far beyond any experiment's need."""


@dataclass(frozen=True)
class DQNConfig:
    env_id: str = "CartPole-v1"
    """Gymnasium environment id with a discrete action space: flat vector observations,
    ``MinAtar/<Game>-v1`` ([minatar] extra) or ``ALE/<Game>-v5`` ([atari] extra)."""
    seed: int = 0
    """Run seed in [0, 2**32 - 1]; torch, exploration, replay, training, validation and test
    episodes each get an independent stream derived from it (dqnlm.seeding)."""
    total_steps: int = 50_000
    """Training length, in env steps summed over all environments."""
    n_envs: int = 1
    """Environments stepped together (gymnasium SyncVectorEnv)."""
    device: str = "auto"
    """auto (CUDA when available), cpu, or cuda."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Widths of the MLP's hidden layers."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean(A) (Wang et al. 2016)."""
    layer_norm: bool = False
    """LayerNorm after each hidden linear layer (as in PQN, Gallici et al. 2024); on a
    convolutional network, on the flattened features and the hidden layer."""
    network: str = "auto"
    """Q-network: mlp, minatar (one 3x3 convolution, 16 channels, then 128 units: Young &
    Tian 2019) or nature (Mnih et al. 2015's three convolutions and 512 units); auto: mlp
    for vector observations, nature for images of at least 36x36 pixels, else minatar.
    hidden_sizes applies to mlp only."""

    frame_skip: int = 4
    """Atari only: emulator frames per agent step (the action repeats; the last two frames
    are max-pooled, removing sprite flicker). Step counts here are agent steps."""
    frame_stack: int = 4
    """Atari only: the last frames stacked into one observation (channels)."""
    screen_size: int = 84
    """Atari only: frames are resized to screen_size x screen_size greyscale pixels."""
    noop_max: int = 0
    """Atari only: up to this many no-op agent steps after each reset (0: none; sticky
    actions already randomise starts, Machado et al. 2018)."""
    terminal_on_life_loss: bool = False
    """Atari only: a lost life ends the training episode (evaluation plays whole games)."""
    sticky_action_prob: float | None = None
    """Atari and MinAtar: probability that the previous action repeats instead of the
    chosen one; default 0.25 on Atari (Machado et al. 2018), 0.1 on MinAtar."""
    clip_rewards: bool | None = None
    """Train on sign(reward) (Mnih et al. 2015); evaluations always report raw returns.
    Default: on for Atari, off otherwise."""
    max_episode_steps: int | None = None
    """Truncate episodes after this many agent steps (they still bootstrap); default: the
    environment's own limit."""

    gamma: float = 0.99
    """Discount factor, in [0, 1]."""
    n_step: int = 1
    """Steps of real reward before bootstrapping (1 is plain DQN)."""
    double_dqn: bool = True
    """Double DQN: the online network picks the next action, the target network values it."""
    loss: str = "huber"
    """TD loss: huber (smooth L1, Mnih et al. 2015) or mse."""
    learning_rate: float = 1e-4
    """Adam step size."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over training, so the final policy settles."""
    max_grad_norm: float = 10.0
    """Clip the gradient's global L2 norm to this; 0 disables clipping."""
    batch_size: int = 64
    """Transitions per gradient update."""
    buffer_size: int = 100_000
    """Replay capacity, in transitions."""
    learning_starts: int = 1_000
    """Env steps of uniformly random play (epsilon = 1) that fill the replay buffer before
    learning begins; the epsilon schedule takes over after them."""
    train_freq: int = 4
    """Env steps between training rounds."""
    gradient_steps: int = 1
    """Gradient updates per training round."""

    target_update: str = "hard"
    """Target-network rule: hard (copy), polyak (soft average), or none (online net is its own target)."""
    target_update_period: int = 1_000
    """Gradient updates between target updates (hard copies or polyak averages)."""
    tau: float = 1.0
    """Polyak coefficient in (0, 1]: target <- (1 - tau) target + tau online. Ignored by hard."""

    exploration_initial_eps: float = 1.0
    """Epsilon-greedy rate at step 0."""
    exploration_final_eps: float = 0.05
    """Epsilon-greedy rate after the decay."""
    exploration_fraction: float = 0.1
    """Fraction of total_steps over which epsilon decays linearly."""

    prioritized: bool = False
    """Proportional prioritized replay (Schaul et al. 2016)."""
    per_alpha: float = 0.6
    """How strongly priorities skew sampling: 0 is uniform."""
    per_beta0: float = 0.4
    """Initial importance-weight exponent, annealed linearly to 1 at total_steps."""
    per_eps: float = 1e-6
    """Added to |TD error| so no transition has zero priority."""

    eval_interval: int = 10_000
    """Env steps between evaluations during training; 0 disables them."""
    eval_episodes: int = 10
    """Greedy episodes per evaluation during training."""
    final_eval_episodes: int = 20
    """Greedy episodes in the evaluation at the end of training (seeds unseen during training)."""
    keep_best: bool = False
    """At the end, if an earlier periodic evaluation scored higher than the final weights
    do on the same validation episodes, keep those best weights (test seeds stay unseen)."""
    stop_at_return: float | None = None
    """End training early once a periodic evaluation's mean return reaches this (as SB3's
    StopTrainingOnRewardThreshold); the final evaluation then runs on unseen seeds."""
    log_interval: int = 1_000
    """Env steps between metric rows (CSV, TensorBoard, progress bar)."""
    checkpoint_interval: int = 10_000
    """Env steps between checkpoints; the last one is always written."""
    save_replay: bool = False
    """Store the replay buffer (npz) with each checkpoint, for exact resumption."""

    def validate(self) -> DQNConfig:
        """Return self, or raise ConfigError listing every invalid field."""
        check = Checks(self)
        check.seed()
        check.need(
            bool(self.env_id.strip()), f"env_id must name an environment, got {self.env_id!r}"
        )
        # caps on what has no sane use (a typo of 1e30 steps would train forever, and 1e8
        # envs would hang building them before any memory estimate could refuse them)
        for name, cap in LIMITS.items():
            value = getattr(self, name)
            check.need(value <= cap, f"{name} must be at most {cap:,}, got {value:,}")
        check.at_least(0, "total_steps learning_starts eval_interval")
        check.at_least(
            1,
            "n_envs batch_size buffer_size train_freq gradient_steps n_step log_interval "
            "checkpoint_interval eval_episodes final_eval_episodes frame_skip frame_stack",
        )
        check.at_least(0, "noop_max")
        check.need(
            self.frame_stack <= 16, f"frame_stack must be at most 16, got {self.frame_stack}"
        )
        check.need(
            8 <= self.screen_size <= 512,
            f"screen_size must be in [8, 512] pixels, got {self.screen_size}",
        )
        check.one_of("network", NETWORKS)
        check.need(
            not (self.network == "nature" and self.screen_size < NATURE_MIN_SIZE),
            f"screen_size={self.screen_size} is too small for the nature network's "
            f"convolutions (at least {NATURE_MIN_SIZE})",
        )
        if self.sticky_action_prob is not None:
            check.within(0, 1, "sticky_action_prob")
        if self.max_episode_steps is not None:
            check.at_least(1, "max_episode_steps")
        check.within(0, 1, "gamma exploration_initial_eps exploration_final_eps")
        check.within(0, 1, "exploration_fraction per_beta0")
        check.positive("learning_rate per_eps")
        check.at_least(0, "max_grad_norm per_alpha")
        check.need(
            self.batch_size <= self.buffer_size,
            f"batch_size ({self.batch_size}) must not exceed buffer_size ({self.buffer_size})",
        )
        check.target_network()
        check.one_of("loss", LOSS_KINDS)
        check.device()
        check.need(
            all(h >= 1 for h in self.hidden_sizes),
            f"hidden_sizes must be positive, got {list(self.hidden_sizes)}",
        )
        floats = [v for v in vars(self).values() if isinstance(v, float)]
        check.need(all(math.isfinite(v) for v in floats), "hyperparameters must be finite numbers")
        return check.done("config")
