"""LMDialogueConfig: a language-model dialogue agent's run, every field with its unit."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from dqnlm.config_io import Checks
from dqnlm.dialogue.config import MAX_EVAL_DIALOGUES, DialogueConfig
from dqnlm.lmdialogue.speaker import SpeakerConfig


@dataclass(frozen=True)
class LMDialogueConfig:
    """Multi-turn token-level Q-learning of a language model that speaks the agent's turns."""

    # environment (DialogueConfig's fields)
    domain: str = "movie"
    """A bundled domain name, or the path of a schema file."""
    max_turns: int = 40
    """Utterances per dialogue, both sides counted (TC-Bot's max_turn); L in the rewards."""
    slot_error_rate: float = 0.0
    """Probability that each slot value the user states reaches the agent as another value."""
    intent_error_rate: float = 0.0
    """Probability that the user's intent reaches the agent as another act."""
    state_line: bool = True
    """Show the agent its tracked state (known slots, matching records, booking) each turn."""
    # model
    model: str = ""
    """A Hugging Face model folder or name, or "" for the embedded speaker: a small GPT-2
    pretrained on the domain's rendered rule-agent dialogues on first use (cached)."""
    speaker_steps: int = 1200
    """Pretraining steps of the embedded speaker (imitation of the rule agent)."""
    speaker_dialogues: int = 4000
    """Rendered rule-agent dialogues the embedded speaker (or a --model's imitation) learns from."""
    imitation_steps: int = 0
    """--model only: fine-tuning steps imitating the rule agent's rendered dialogues before
    Q-learning (with LoRA when lora_rank > 0, then merged), cached; 0: start from the
    model as it is."""
    imitation_batch_size: int = 4
    """--model only: dialogues per imitation step."""
    imitation_learning_rate: float = 2e-4
    """--model only: peak AdamW step size of imitation."""
    lora_rank: int = 0
    """LoRA rank (0: full fine-tuning)."""
    lora_alpha: float = 16.0
    """LoRA scale numerator (the update is scaled by alpha / rank)."""
    # sampling
    new_tokens: int = 24
    """Tokens an agent turn may take; a longer turn is cut there."""
    temperature: float = 1.0
    """Sampling temperature of training dialogues (evaluation is greedy)."""
    # learning
    rounds: int = 400
    """Rounds of play-then-learn."""
    max_seconds: float = 0.0
    """Stop after this much training wall-clock (0: no limit); the final test still runs."""
    dialogues_per_round: int = 16
    """Dialogues played (in one batch) per round, on training goals."""
    updates_per_round: int = 2
    """TD updates per round, each on ``batch_size`` replayed dialogues."""
    batch_size: int = 16
    """Whole dialogues per TD update."""
    replay_capacity: int = 512
    """Dialogues kept for replay (oldest out first)."""
    learning_rate: float = 1e-4
    """AdamW step size."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0: none)."""
    reward_scale: float = 0.0
    """Rewards are multiplied by this before learning (0: 1 / (2 max_turns), so success
    pays about +1 and a turn costs 1 / (2 max_turns))."""
    beta: float = 0.1
    """KL strength: Q = beta (logits - reference logits); the soft value's temperature."""
    kind: str = "soft"
    """TD target: soft (KL-regularised, the reference as prior), max or double."""
    gamma: float = 1.0
    """Discount per agent token."""
    lam: float = 0.9
    """Q(lambda) trace decay across agent tokens (and turns)."""
    cql_alpha: float = 0.0
    """Conservative Q-learning weight (0: off)."""
    kl_penalty: float = 0.0
    """Weight of an explicit KL(pi || pi_ref) term in the loss (0: off)."""
    target_update: str = "polyak"
    """Target-network rule: polyak, hard or none."""
    target_update_period: int = 1
    """Gradient updates between target updates."""
    tau: float = 0.01
    """Polyak coefficient per target update (0.05 diverged by round 60 in tuning)."""
    # evaluation and outputs
    eval_interval: int = 25
    """Rounds between greedy validation evaluations on training goals (the best is kept)."""
    eval_episodes: int = 64
    """Dialogues per validation evaluation."""
    test_episodes: int = 0
    """Dialogues in the final held-out evaluation (0: every test goal once)."""
    keep_best: bool = True
    """Save the policy with the best validation success, not the last."""
    checkpoint_every: int = 25
    """Rounds between resumable checkpoints."""
    seed: int = 0
    """Seeds sampling, replay and dialogue goals."""
    device: str = "cpu"
    """cpu, cuda or auto."""

    def env_config(self, split: str = "train") -> DialogueConfig:
        names = [f.name for f in fields(DialogueConfig) if f.name not in ("split", "text_level")]
        return DialogueConfig(
            split=split, text_level=True, **{name: getattr(self, name) for name in names}
        )

    def speaker_config(self) -> SpeakerConfig:
        return SpeakerConfig(
            steps=self.speaker_steps,
            dialogues=self.speaker_dialogues,
            n_layer=2,
            state_line=self.state_line,
        )

    def imitation_config(self) -> SpeakerConfig:
        return SpeakerConfig(
            steps=self.imitation_steps,
            dialogues=self.speaker_dialogues,
            batch_size=self.imitation_batch_size,
            learning_rate=self.imitation_learning_rate,
            state_line=self.state_line,
        )

    @property
    def scale(self) -> float:
        return self.reward_scale or 1.0 / (2 * self.max_turns)

    def validate(self) -> LMDialogueConfig:
        check = Checks(self)
        check.problems += self.env_config().checks().problems
        check.seed()
        check.at_least(
            1, "rounds dialogues_per_round updates_per_round batch_size replay_capacity "
            "new_tokens eval_interval eval_episodes checkpoint_every speaker_steps "
            "speaker_dialogues target_update_period",
        )  # fmt: skip
        check.at_least(0, "test_episodes lora_rank imitation_steps")
        check.at_least(1, "imitation_batch_size")
        check.need(
            self.model or not self.imitation_steps,
            f"imitation_steps applies to a --model only (the embedded speaker's is "
            f"speaker_steps), got imitation_steps={self.imitation_steps} without a model",
        )
        for name in ("eval_episodes", "test_episodes"):
            value = getattr(self, name)
            check.need(
                value <= MAX_EVAL_DIALOGUES,
                f"{name} must be <= {MAX_EVAL_DIALOGUES:,}, got {value:,}",
            )
        check.positive("learning_rate beta temperature imitation_learning_rate")
        for name in ("max_seconds", "reward_scale", "cql_alpha", "kl_penalty", "max_grad_norm"):
            value = getattr(self, name)
            check.need(0 <= value < math.inf, f"{name} must be >= 0 and finite, got {value}")
        check.within(0, 1, "gamma lam")
        check.one_of("kind", ("soft", "max", "double"))
        check.target_network()
        check.device()
        return check.done("LM dialogue config")
