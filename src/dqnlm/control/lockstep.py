"""Many seeds of one configuration trained in lockstep in one process.

Research wants many seeds; PureJaxRL and PQN train ten or more in the time others train
one by computing them together. Here ``N`` ordinary :class:`~dqnlm.control.dqn.DQN`
agents (one per seed: own environments, replay, exploration RNG, target network, run
directory ``DIR/s<seed>``) take the same steps of the same loop, and their networks are
computed as one: the ``N`` Q-networks are stacked (:class:`~dqnlm.core.stacked.StackedModules`,
``torch.func.vmap``), so acting is one forward for all seeds and an update is one
forward/backward and one Adam step for all seeds, with gradients clipped per seed.

Every schedule in the control loop runs on counters that all seeds share (env steps,
gradient updates), so seed ``i`` here makes exactly the random draws, updates and target
syncs of a separate run of seed ``i``, and differs from it only by the rounding of the
batched kernels. Evaluations and checkpoints go through each agent's own code after its
weights, target and Adam state are written back, so every ``DIR/s<seed>`` is an ordinary
run directory that ``dqnlm eval`` and ``dqnlm train --resume`` accept. A seed that stops
early (``stop_at_return``) leaves the stack, and the rest go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dqnlm.control.config import DQNConfig
from dqnlm.control.dqn import DQN, evaluation
from dqnlm.control.envs import make_vec_env, run_episodes_together
from dqnlm.core.acting import epsilon_greedy
from dqnlm.core.losses import dqn_loss
from dqnlm.core.stacked import StackedModules, clip_grad_norm_per_member
from dqnlm.core.target import TargetNetwork
from dqnlm.errors import DQNLMError
from dqnlm.run import HeldSignals, Run


def seed_dir(root: str | Path, seed: int) -> Path:
    """Where seed ``seed`` of a lockstep run writes its ordinary run directory."""
    return Path(root) / f"s{seed}"


class Lockstep:
    """``N`` DQN agents that differ only in their seed, stepped and updated together."""

    def __init__(self, agents: list[DQN]) -> None:
        if not agents:
            raise DQNLMError("a lockstep run needs at least one seed")
        first = agents[0]
        for agent in agents[1:]:
            same = dataclasses.replace(agent.config, seed=first.config.seed) == first.config
            if not same:
                raise DQNLMError(
                    f"seeds {first.config.seed} and {agent.config.seed} have different configs; "
                    "a lockstep run trains one config on many seeds"
                )
            if (agent.global_step, agent.num_updates) != (first.global_step, first.num_updates):
                raise DQNLMError(
                    f"seed {agent.config.seed} stands at env step {agent.global_step}, seed "
                    f"{first.config.seed} at {first.global_step}: resume them separately"
                )
        if first.config.prioritized:
            raise DQNLMError("prioritized replay is not available with --seeds yet")
        self.agents = agents
        self.config = first.config
        self.live: list[DQN] = []
        self._stack()

    # ------------------------------------------------------------ stacking, unstacking
    def _stack(self) -> None:
        """Build the stacked network, target and optimizer from the live agents."""
        cfg = self.config
        self.live = [agent for agent in self.agents if not agent.done]
        if not self.live:
            return
        self.net = StackedModules([agent.q_net for agent in self.live])
        self.target = TargetNetwork(self.net, cfg.target_update, cfg.target_update_period, cfg.tau)
        if cfg.target_update != "none":
            for i, agent in enumerate(self.live):
                self.target.module.load_member_state(i, agent.target.state_dict())
        self.params = list(self.net.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.learning_rate, fused=True)
        for j, param in enumerate(self.params):
            states = [agent.optimizer.state.get(agent._params[j]) for agent in self.live]
            if states[0]:
                self.optimizer.state[param] = {
                    "step": states[0]["step"].clone(),
                    "exp_avg": torch.stack([s["exp_avg"] for s in states]),
                    "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]),
                }

    @torch.no_grad()
    def _unstack(self, agent: DQN) -> None:
        """Write one live agent's weights, target and Adam state back into it."""
        i = self.live.index(agent)
        agent.q_net.load_state_dict(self.net.member_state(i))
        if self.config.target_update != "none":
            agent.target.load_state_dict(self.target.module.member_state(i))
        for param, own in zip(self.params, agent._params):
            state = self.optimizer.state.get(param)
            if state:
                agent.optimizer.state[own] = {
                    "step": state["step"].clone(),
                    "exp_avg": state["exp_avg"][i].clone(),
                    "exp_avg_sq": state["exp_avg_sq"][i].clone(),
                }
        agent.set_learning_rate(agent.optimizer)

    # ------------------------------------------------------------------------ training
    def _update(self) -> list[tuple[float, float]]:
        """One gradient step for every live seed; (loss, mean Q) per seed."""
        cfg = self.config
        batches = [agent.replay.sample(cfg.batch_size) for agent in self.live]
        batch = dataclasses.replace(
            batches[0],
            **{f: torch.stack([getattr(b, f) for b in batches]) for f in _BATCH_FIELDS},
        )
        loss, q, _ = dqn_loss(self.net, self.target, batch, cfg.loss, cfg.double_dqn)
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # the seeds' parameters are disjoint: each gets its own gradient
        if cfg.max_grad_norm > 0:
            clip_grad_norm_per_member(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        for agent in self.live:
            agent.num_updates += 1
        self.target.update(self.live[0].num_updates)
        values = torch.stack([loss.detach(), q.detach().mean(-1)], dim=1).tolist()  # one sync
        return [(loss_i, q_i) for loss_i, q_i in values]

    @torch.no_grad()
    def _greedy(self, observations: list) -> list:
        inputs = torch.stack([agent.as_input(o) for agent, o in zip(self.live, observations)])
        return list(self.net(inputs).argmax(dim=-1).cpu().numpy())

    def learn(self, progress: bool = True, tensorboard: bool = True) -> list[dict]:
        """Train every seed to ``total_steps`` (or its early stop); the final evaluations,
        in seed order."""
        cfg, agents = self.config, self.agents
        n_actions = agents[0].q_net.head.out_features
        total = cfg.total_steps * len(agents)
        desc = f"{cfg.env_id} x{len(agents)} seeds"
        with contextlib.ExitStack() as stack:
            # one holder for Ctrl-C / SIGTERM: at a safe point every seed checkpoints
            signals = HeldSignals()
            stack.callback(signals.restore)
            bar = stack.enter_context(
                tqdm(total=total, initial=sum(a.global_step for a in agents), desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
            )  # fmt: skip
            envs, runs, obs = {}, {}, {}
            for agent in agents:
                runs[agent] = stack.enter_context(
                    agent.open_run(False, tensorboard, hold_signals=False)
                )
                if not agent.done:
                    envs[agent] = stack.enter_context(
                        contextlib.closing(make_vec_env(agent.config, cfg.n_envs))
                    )
                    obs[agent] = agent.start(envs[agent])
            results: dict[DQN, dict] = {}
            while self.live:
                lead = self.live[0]
                epsilon, before = lead.exploration(), lead.global_step
                # one forward for all seeds, and only if some seed acts greedily at all
                greedy = functools.cache(
                    functools.partial(self._greedy, [obs[a] for a in self.live])
                )
                for i, agent in enumerate(self.live):
                    actions = epsilon_greedy(
                        agent.rng, lambda o, i=i, g=greedy: g()[i], obs[agent], epsilon, n_actions
                    )
                    obs[agent] = agent.env_step(envs[agent], obs[agent], actions)
                updates = lead.update_rounds(before)
                if updates:  # one schedule on one shared counter: the lead's lr is every seed's
                    lead.set_learning_rate(self.optimizer)
                for _ in range(updates):
                    for agent, values in zip(self.live, self._update()):
                        agent.record_update(runs[agent], *values)
                finished = []
                evaluations = {}
                now = lead.global_step
                if Run.due(before, now, cfg.eval_interval) and now < cfg.total_steps:
                    # every seed's validation episodes at once, on the stacked networks
                    seeds = [a.seeds.validation for a in self.live]
                    evaluations = dict(zip(self.live, self.evaluate(cfg.eval_episodes, seeds)))
                for agent in self.live:
                    if agent.needs_weights(before):
                        self._unstack(agent)
                    result = evaluations.get(agent)
                    agent.bookkeeping(runs[agent], before, epsilon, lambda *_, r=result: r)
                    if agent.done:
                        finished.append(agent)
                bar.update(cfg.n_envs * len(self.live))
                if signals.signum is not None:
                    self._checkpoint_all(runs)
                    signals.deliver()
                if finished:  # leave the stack: finish these seeds, restack the others
                    for agent in self.live:
                        self._unstack(agent)
                    for agent in finished:
                        bar.update(cfg.total_steps - agent.global_step)
                        runs[agent].loop_done()
                        results[agent] = agent.finish(runs[agent])
                        envs.pop(agent).close()
                    self._stack()
            for agent in agents:
                if agent not in results:  # finished before this call (a resumed run)
                    results[agent] = agent.finish(runs[agent])
        return [results[agent] for agent in agents]

    @torch.no_grad()
    def evaluate(self, episodes: int, seeds: list[int]) -> list[dict]:
        """Each live seed's greedy evaluation on its episodes ``seeds[i] + j``, played
        together with one stacked forward per step: what each agent's own
        :meth:`~dqnlm.control.dqn.DQN.evaluate` returns."""
        gamma = self.config.gamma

        def policy(observations: list) -> list:
            longest = max(len(o) for o in observations)
            padded = [
                np.concatenate([o, np.zeros((longest - len(o), *o.shape[1:]), o.dtype)])
                if len(o) < longest else o
                for o in observations
            ]  # fmt: skip
            greedy = self._greedy(padded)
            return [g[: len(o)] for g, o in zip(greedy, observations)]

        makes = [agent.eval_env for agent in self.live]
        played = run_episodes_together(makes, policy, episodes, seeds, gamma=gamma)
        inputs = [agent.as_input(starts) for agent, (_, _, starts) in zip(self.live, played)]
        start_q = self.net(torch.stack(inputs))
        return [evaluation(*p, q) for p, q in zip(played, start_q)]

    def _checkpoint_all(self, runs: dict) -> None:
        """A held signal: every live seed saves a consistent checkpoint now."""
        for agent in self.live:
            self._unstack(agent)
            if agent.finite():
                runs[agent].checkpoint()


_BATCH_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "discounts")


def lockstep(config: DQNConfig, seeds: list[int], root: str | Path | None) -> Lockstep:
    """Fresh agents for ``seeds`` (each writing ``root/s<seed>``, or nothing without root)."""
    agents = [
        DQN(dataclasses.replace(config, seed=seed), None if root is None else seed_dir(root, seed))
        for seed in seeds
    ]
    return Lockstep(agents)
