"""Task-oriented dialogue (TC-Bot style): domain schemas, a synthetic knowledge base and
user goals, an agenda-based user simulator, a state tracker, a Gymnasium environment,
a rule baseline agent, and template NLG / rule NLU."""

import gymnasium

from dqnlm.dialogue.acts import DONT_CARE, NO_MATCH, Act
from dqnlm.dialogue.agents import RuleAgent, evaluate
from dqnlm.dialogue.config import DialogueConfig
from dqnlm.dialogue.env import DialogueEnv, Turn
from dqnlm.dialogue.kb import Goal, KnowledgeBase, World, build_world
from dqnlm.dialogue.nlg import NLG
from dqnlm.dialogue.nlu import NLU
from dqnlm.dialogue.schema import Domain, Slot, load_domain, parse_domain
from dqnlm.dialogue.simulator import UserSimulator
from dqnlm.dialogue.tracker import StateTracker

__all__ = [
    "DONT_CARE",
    "NLG",
    "NLU",
    "NO_MATCH",
    "Act",
    "DialogueConfig",
    "DialogueEnv",
    "Domain",
    "Goal",
    "KnowledgeBase",
    "RuleAgent",
    "Slot",
    "StateTracker",
    "Turn",
    "UserSimulator",
    "World",
    "build_world",
    "evaluate",
    "load_domain",
    "parse_domain",
]

# `dqnlm train --env dqnlm.dialogue:Dialogue-v0`: gymnasium imports this module, then makes it
gymnasium.register("Dialogue-v0", entry_point="dqnlm.dialogue.env:DialogueEnv")
