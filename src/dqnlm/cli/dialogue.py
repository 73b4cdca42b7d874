"""``dqnlm dialogue ...``: train, eval, show and chat (a thin face over dqnlm.dialogue)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from dqnlm.cli import common
from dqnlm.dialogue.config import RULE_EVAL_SEED
from dqnlm.errors import DQNLMError
from dqnlm.rundir import training_run
from dqnlm.seeding import seed_streams

RULE = "rule"
MAX_EVAL_EPISODES = 1_000_000
"""More dialogues than this only take longer: the success rate's error is already < 0.001."""
MAX_SHOW_EPISODES = 1_000
"""Dialogues `show` prints at most; a person reads them."""
AGENT_HELP = "a trained run directory, or `rule` for the rule-based baseline"

TRUST = "a run directory's saved config read a schema file outside the run directory"
"""What ``--trust-code`` allows in these commands."""


def _agent_arguments(p, split_default: str) -> None:
    p.add_argument("agent", metavar="RUN_DIR|rule", help=AGENT_HELP)
    p.add_argument(
        "--domain", help="movie, restaurant or a schema file (default: the run's own, or movie)"
    )
    p.add_argument("--split", choices=("train", "test"), default=split_default)
    p.add_argument(
        "--text",
        action="store_true",
        help="the agent hears the user's words: user acts go through NLG text and the NLU",
    )
    p.add_argument(
        "--noise",
        type=float,
        help="slot error rate of the user simulator, in [0, 1] (default: the run's own, 0 for rule)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="first dialogue seed (default: a run's test stream, as its eval.json; "
        f"{RULE_EVAL_SEED} for rule)",
    )
    common.add_trust_argument(p, TRUST)


def add_dialogue_parser(sub) -> None:
    from dqnlm.dialogue.config import DialogueDQNConfig
    from dqnlm.lmdialogue.config import LMDialogueConfig

    dialogue = sub.add_parser(
        "dialogue", help="task-oriented dialogue: a DQN policy against a user simulator"
    ).add_subparsers(dest="dialogue_command", required=True, metavar="DIALOGUE_COMMAND")
    p = dialogue.add_parser(
        "train",
        help="train a DQN dialogue policy against the user simulator",
        description="Train a DQN dialogue policy (warm start from the rule agent, target "
        "network, Double DQN, action masking) on the domain's training goals, then "
        "evaluate it on the held-out test goals. Settings apply in order: --config file, "
        "--domain, --set, then --seed/--epochs.",
        epilog="--agent dqn (default) fields:\n"
        + common.config_fields_help(DialogueDQNConfig)
        + "\n\n--agent lm fields:\n"
        + common.config_fields_help(LMDialogueConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--agent",
        choices=("dqn", "lm"),
        default="dqn",
        help="dqn: a Q-network over dialogue acts; lm: a language model that speaks every "
        "agent turn, trained by multi-turn token-level Q-learning (default dqn)",
    )
    p.add_argument("--domain", help="movie (default), restaurant, or a schema file (.json/.yaml)")
    p.add_argument(
        "--model",
        help="--agent lm: a Hugging Face model folder or name (default: the embedded speaker, "
        "a small GPT-2 pretrained on the domain's rule-agent dialogues on first use)",
    )
    common.add_config_arguments(p, "target_update=polyak")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--epochs", type=int, help="--agent dqn: training epochs (also extends --resume)"
    )
    p.add_argument("--rounds", type=int, help="--agent lm: training rounds (also extends --resume)")
    common.add_train_arguments(p, "dialogue-<domain>", TRUST)

    p = dialogue.add_parser(
        "eval",
        help="success rate, turns and reward of a policy on simulated dialogues",
        description="Play greedy dialogues against the user simulator: every goal of the "
        "split once, or --episodes dialogues cycling through the goals.",
    )
    _agent_arguments(p, "test")
    p.add_argument("--episodes", type=int, help="dialogues (default: every goal of the split once)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = dialogue.add_parser("show", help="print simulated dialogues turn by turn")
    _agent_arguments(p, "test")
    p.add_argument("--episodes", type=int, default=3, help="dialogues to print (default 3)")

    p = dialogue.add_parser(
        "chat",
        help="play the user yourself, in free text",
        description="You play the user and type free text toward a goal shown to you; after "
        "each line the chat says what it understood (a later value corrects an earlier one: "
        "'no, 4 people') and the agent answers. /goal and /state show where you stand; "
        "Ctrl-D (end of input) ends the chat.",
    )
    _talk_arguments(p)
    p.add_argument(
        "--seed", type=int, default=0, help="picks your goal among the test goals (default 0)"
    )
    common.add_trust_argument(p, TRUST)
    add_serve_parser(dialogue)

    p = dialogue.add_parser(
        "nlu",
        help="what the user NLU reads in text, or its scores on labelled utterances",
        description="Parse TEXT into a dialogue act, or score the NLU on JSONL files of "
        "hand-labelled utterances (format: docs/nlu-annotation.md): slot-value and request "
        "precision, recall and F1, per slot, and intent accuracy.",
    )
    p.add_argument("text", nargs="*", help="utterances to parse")
    p.add_argument(
        "--domain",
        help="movie (default), restaurant or a schema file; for --eval it replaces each "
        "line's own (bundled) domain",
    )
    p.add_argument("--eval", nargs="+", metavar="FILE", help="labelled JSONL files to score")
    p.add_argument("--errors", action="store_true", help="--eval: list every wrong parse")
    p.add_argument("--json", action="store_true", help="--eval: print one JSON object")


def _talk_arguments(p) -> None:
    """The agent a person talks to (`chat`, `serve`)."""
    p.add_argument("agent", metavar="RUN_DIR|rule", help=AGENT_HELP)
    p.add_argument("--domain", help="for `rule`: movie (default), restaurant or a schema file")


def add_serve_parser(dialogue) -> None:
    p = dialogue.add_parser(
        "serve",
        help="a web page to talk to an agent, with its state and Q-values",
        description="Serve a chat page: the conversation, what the agent knows, and for a "
        "DQN run the Q-value of every action at every turn (the chosen one marked, masked "
        "ones greyed). Only this computer may connect unless --host says otherwise.",
    )
    _talk_arguments(p)
    p.add_argument(
        "--port", type=int, default=8765, help="TCP port (default 8765; 0: any free one)"
    )
    p.add_argument(
        "--host",
        help="address to listen on (default 127.0.0.1, this computer only); any other lets "
        "other machines connect",
    )
    p.add_argument(
        "--seed", type=int, help="goal of the first conversation (default: 0, then 1, 2, ...)"
    )
    common.add_trust_argument(p, TRUST)


def _load_agent(args, **env_overrides):
    """(environment config, agent, first dialogue seed) for RUN_DIR or `rule`; without
    --seed a run replays its test stream, the seeds of its eval.json."""
    from dqnlm.dialogue import DialogueConfig, RuleAgent, load_domain
    from dqnlm.dialogue.dqn import load_policy

    if args.agent == RULE:
        domain = "movie" if args.domain is None else args.domain
        config = DialogueConfig(domain=domain, **env_overrides).validate()
        seed = RULE_EVAL_SEED if args.seed is None else args.seed
        return config, RuleAgent(load_domain(domain)), seed
    if args.domain is not None:
        env_overrides["domain"] = args.domain
    run_fields = {k: v for k, v in env_overrides.items() if k != "split"}
    run_config, policy = load_policy(args.agent, trust_code=args.trust_code, **run_fields)
    seed = seed_streams(run_config.seed).test if args.seed is None else args.seed
    return run_config.env_config(env_overrides.get("split", "train")), policy, seed


def _env_overrides(args) -> dict:
    overrides = {"split": args.split}
    if args.noise is not None:
        overrides["slot_error_rate"] = args.noise
    if args.text:
        overrides["text_level"] = True
    return overrides


def cmd_train(args) -> int:
    from dqnlm.dialogue.config import DialogueDQNConfig
    from dqnlm.dialogue.dqn import DialogueDQN, domain_inside

    common.set_threads(args.threads)
    if args.agent == "lm" or (args.resume and _is_lm_run(Path(args.resume))):
        return _train_lm(args)
    if args.model is not None or args.rounds is not None:
        flag = "--model" if args.model is not None else "--rounds"
        raise DQNLMError(f"{flag} is an option of --agent lm")
    if args.resume:
        common.refuse_config_with_resume(args, ("epochs",), ("domain",))
        run_dir = args.resume
    else:
        config = common.layer_config(
            DialogueDQNConfig(),
            args.config,
            args.overrides,
            {"seed": args.seed, "epochs": args.epochs},
            # an empty --domain is a mistake, not the default: only None is skipped
            before_set={"domain": args.domain},
        ).validate()
        name = f"dialogue-{Path(config.domain).stem}"
        run_dir = args.run_dir or common.default_run_dir(name, config.seed)
    with training_run(
        run_dir,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        new=lambda: DialogueDQN(config, run_dir),  # loads the domain before anything is written
        load=lambda: DialogueDQN.load(run_dir, epochs=args.epochs, trust_code=args.trust_code),
        restart=lambda values, source: DialogueDQN(
            domain_inside(
                common.config_from_run(DialogueDQNConfig, values, source, epochs=args.epochs),
                run_dir,
                source,
                args.trust_code,
            ),
            run_dir,
        ),
    ) as agent:
        if agent.last_checkpoint:
            print(f"resuming {run_dir} at epoch {agent.epoch} of {agent.config.epochs}")
        result = agent.learn(progress=not args.no_progress, tensorboard=not args.no_tensorboard)
    print(
        f"test goals: success {result['success_rate']:.3f}, {result['avg_turns']:.1f} turns, "
        f"reward {result['avg_reward']:.1f} over {result['episodes']} dialogues "
        f"({result['dialogues']:,} training dialogues, {result['train_seconds']:.0f} s)"
    )
    print(f"run directory: {agent.run_dir}")
    return 0


def _is_lm_run(run_dir: Path) -> bool:
    """Whether a run directory holds an LM dialogue run (its config has LM fields)."""
    from dqnlm.config_io import load_toml

    toml = run_dir / "config.toml"
    try:
        return toml.is_file() and "new_tokens" in load_toml(toml)
    except DQNLMError:
        return False


def _train_lm(args) -> int:
    from dqnlm.dialogue.dqn import domain_inside
    from dqnlm.lmdialogue.config import LMDialogueConfig
    from dqnlm.lmdialogue.trainer import LMDialogueTrainer

    if args.epochs is not None:
        raise DQNLMError("--epochs is an option of --agent dqn; --agent lm trains --rounds")
    if args.resume:
        common.refuse_config_with_resume(args, ("rounds",), ("domain", "model"))
        run_dir = Path(args.resume)
    else:
        config = common.layer_config(
            LMDialogueConfig(),
            args.config,
            args.overrides,
            {"seed": args.seed, "rounds": args.rounds},
            before_set={"domain": args.domain, "model": args.model},
        ).validate()
        name = f"dialogue-lm-{Path(config.domain).stem}"
        run_dir = args.run_dir or common.default_run_dir(name, config.seed)
    progress = not args.no_progress
    with training_run(
        run_dir,
        resume=bool(args.resume),
        overwrite=args.overwrite,
        new=lambda: LMDialogueTrainer(config, run_dir, progress, args.trust_code),
        load=lambda: LMDialogueTrainer.load(
            run_dir, rounds=args.rounds, trust_code=args.trust_code
        ),
        restart=lambda values, source: LMDialogueTrainer(
            domain_inside(
                common.config_from_run(LMDialogueConfig, values, source, rounds=args.rounds),
                run_dir,
                source,
                args.trust_code,
            ),
            run_dir,
            progress,
            args.trust_code,
        ),
    ) as agent:
        if agent.last_checkpoint:
            print(f"resuming {run_dir} at round {agent.round} of {agent.config.rounds}")
        result = agent.learn(progress=progress, tensorboard=not args.no_tensorboard)
    print(
        f"test goals: success {result['success_rate']:.3f}, {result['avg_turns']:.1f} turns, "
        f"reward {result['avg_reward']:.1f}, parse rate {result['parse_rate']:.3f} over "
        f"{result['episodes']} dialogues ({result['dialogues']:,} training dialogues, "
        f"{result['train_seconds']:.0f} s)"
    )
    print(f"run directory: {agent.run_dir}")
    return 0


def _lm_agent(args, **env_overrides):
    """(env config, run config, model, tokenizer, first seed) of an LM run, or None."""
    if args.agent == RULE or not (Path(args.agent) / "policy").is_dir():
        return None
    from dqnlm.lmdialogue.trainer import load_agent

    config, model, tokenizer = load_agent(args.agent, trust_code=args.trust_code)
    if args.domain is not None:
        raise DQNLMError("--domain: an LM dialogue run speaks its own domain only")
    noise = {k: v for k, v in env_overrides.items() if k == "slot_error_rate"}
    env_config = dataclasses.replace(config.env_config(env_overrides.get("split", "test")), **noise)
    seed = seed_streams(config.seed).test if args.seed is None else args.seed
    return env_config, config, model, tokenizer, seed


def cmd_eval(args) -> int:
    from dqnlm.dialogue import DialogueEnv, evaluate

    common.check_seed_flag(args.seed)
    common.check_episodes(args.episodes, MAX_EVAL_EPISODES)
    lm = _lm_agent(args, **_env_overrides(args))
    if lm is not None:
        from dqnlm.dialogue.text_env import TextDialogueEnv
        from dqnlm.lmdialogue import rollout

        config, run_config, model, tokenizer, seed = lm
        envs = [TextDialogueEnv(config, run_config.state_line) for _ in range(32)]
        episodes = args.episodes or len(envs[0].goals)
        result = rollout.evaluate(
            model, tokenizer, envs, episodes, seed, run_config.new_tokens,
            context_of(model),
        )  # fmt: skip
    else:
        config, agent, seed = _load_agent(args, **_env_overrides(args))
        result = evaluate(DialogueEnv(config), agent, seed=seed, episodes=args.episodes)
    if args.json:
        print(json.dumps(result))
    else:
        noise = f", slot noise {config.slot_error_rate:g}" if config.slot_error_rate else ""
        print(
            f"{args.agent} on {config.split} goals{noise}: success {result['success_rate']:.3f}, "
            f"{result['avg_turns']:.2f} turns, reward {result['avg_reward']:.2f} "
            f"over {result['episodes']} dialogues"
            + (f", parse rate {result['parse_rate']:.3f}" if "parse_rate" in result else "")
        )
    return 0


def context_of(model) -> int:
    from dqnlm.lm.models import context_length

    return context_length(model) or 2048


def cmd_show(args) -> int:
    from dqnlm.dialogue import DialogueEnv

    common.check_seed_flag(args.seed)
    common.check_episodes(args.episodes, MAX_SHOW_EPISODES)
    lm = _lm_agent(args, **_env_overrides(args))
    if lm is not None:
        return _show_lm(args, *lm)
    config, agent, seed = _load_agent(args, **_env_overrides(args))
    env = DialogueEnv(config, render_mode="ansi")
    for i in range(args.episodes):
        goal = i % len(env.goals)
        obs, info = env.reset(seed=seed + i, options={"goal": goal})
        agent.reset()
        total, done = 0.0, False
        print(f"--- dialogue {i + 1}: {config.split} goal {goal}")
        print(f"    constraints: {_pairs(info['goal'].constraints)}")
        print(f"    requests:    {', '.join(info['goal'].requests)}")
        while not done:
            obs, reward, done, _, info = env.step(agent.act(obs, env.tracker))
            total += reward
        print(env.render(), end="")
        turns = (len(info["turns"]) - 1) // 2
        print(f"    => {info['outcome']} in {turns} agent turns, reward {total:g}\n")
    return 0


def _show_lm(args, config, run_config, model, tokenizer, seed) -> int:
    """An LM agent's dialogues: the words it wrote, the act the agent NLU read, what the
    user heard, turn by turn."""
    from dqnlm.dialogue.text_env import TextDialogueEnv
    from dqnlm.lmdialogue import rollout

    env = TextDialogueEnv(config, run_config.state_line)
    for i in range(args.episodes):
        goal = i % len(env.goals)
        [played] = rollout.play(
            model, tokenizer, [env], [(goal, seed + i)], run_config.new_tokens, greedy=True,
            context=context_of(model),
        )  # fmt: skip
        print(f"--- dialogue {i + 1}: {config.split} goal {goal}")
        print(f"    constraints: {_pairs(env.env.goal.constraints)}")
        print(f"    requests:    {', '.join(env.env.goal.requests)}")
        print(env.transcript())
        outcome = "success" if played.success else "failure"
        print(f"    => {outcome} in {played.turns} agent turns, reward {played.total:g}\n")
    return 0


def _pairs(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _chat_setup(config, seed: int, hint: str):
    """``(domain, world, example goal)`` of a chat, after its introduction is printed."""
    from dqnlm.dialogue import build_world, load_domain

    domain = load_domain(config.domain)
    world = build_world(domain)
    goal = world.goals("test")[seed % len(world.goals("test"))]
    print(f"You are the user of a {domain.name} booking agent. {hint}")
    return domain, world, goal


CHAT_HELP = "/goal shows your goal, /state what the agent knows; Ctrl-D (end of input) ends."
MARKS = {"stated": "[x]", "told": "[x]", "wrong": "[!]", "todo": "[ ]"}
"""How the terminal marks goal items: the agent has it, has it wrong, not yet."""


def _typed() -> str | None:
    """What the user typed, as one line of valid text; None at the end of input."""
    from dqnlm.dialogue.text_env import clean_text

    try:
        return clean_text(input("you: "))
    except EOFError:
        print("\n(chat ended)")
        return None
    except UnicodeDecodeError:
        return ""


def _goal_line(session) -> str:
    return "  ".join(f"{MARKS[i['status']]} {i['item']}" for i in session.goal_status())


def _state_line(session) -> str:
    state = session.state_summary()
    known = ", ".join(f"{k} {v}" for k, v in state["known"].items()) or "nothing yet"
    booking = f", booked {state['booking']}" if state["booking"] else ""
    return f"  the agent knows: {known}; {state['matches']} of {state['records']} records match{booking}"


def cmd_chat(args) -> int:
    from dqnlm.dialogue.chat import ChatSession

    common.check_seed_flag(args.seed)
    lm = _lm_agent(args)
    if lm is not None:
        return _chat_lm(args, *lm)
    config, agent, _ = _load_agent(args)
    domain, world, goal = _chat_setup(config, args.seed, "Type what you want in plain words.")
    session = ChatSession(domain, world, agent, config.max_turns, goal)
    print(f"Your goal (--seed picks another): {_goal_line(session)}")
    print(f"For example: {session.opening_hint()}")
    print(CHAT_HELP + "\n")
    while True:
        text = _typed()
        if text is None:
            return 0
        if text.strip().lower() in ("/goal", "/state", "/help"):
            command = text.strip().lower()
            print(
                f"  goal: {_goal_line(session)}"
                if command == "/goal"
                else _state_line(session)
                if command == "/state"
                else f"  {CHAT_HELP}"
            )
            continue
        reply = session.say(text)
        if reply.note:
            print(f"  ({reply.note})")
        if reply.understood:
            print(f"  understood: {reply.understood}")
        for change in reply.changed:
            print(f"  changed: {change}")
        print(f"agent: {reply.agent}")
        if reply.action is not None:
            print(f"  goal: {_goal_line(session)}")
        if reply.done:
            print(f"({reply.ending})")
            return 0


def _agent_said(tracker, act, text: str, max_turns: int) -> bool:
    """Record and print the agent's turn; whether it ended the chat."""
    tracker.observe_agent(act)
    print(f"agent: {text}")
    if act.intent in ("thanks", "closing"):
        print("(the agent ended the dialogue)")
        return True
    if tracker.turn >= max_turns - 1:
        print(f"(the dialogue reached its {max_turns}-utterance limit)")
        return True
    return False


def _chat_lm(args, config, run_config, model, tokenizer, seed) -> int:
    """You are the user; the LM writes each agent turn, the agent NLU reads it, the
    tracker fills its values from the knowledge base."""
    from dqnlm.dialogue import NLG, NLU, Act, StateTracker
    from dqnlm.dialogue.agent_nlu import AgentNLU
    from dqnlm.dialogue.chat import describe
    from dqnlm.dialogue.nlu import MAX_CHARS
    from dqnlm.dialogue.text_env import observation_text
    from dqnlm.lmdialogue import rollout
    from dqnlm.lmdialogue.speaker import encode_segment

    domain, world, _ = _chat_setup(config, args.seed, "A language model speaks for it.")
    print("Ctrl-D ends the chat.\n")
    tracker = StateTracker(domain, world.kb, config.max_turns)
    nlu, nlg, agent_nlu = NLU(domain), NLG(domain), AgentNLU(domain)
    ids: list[int] = []
    started = False
    while True:
        text = _typed()
        if text is None:
            return 0
        text = text[:MAX_CHARS]  # what the NLU reads of a line
        asked = tracker.agent_act.request if started and tracker.agent_act else ()
        act = nlu.parse(text, asked=asked[0] if asked else None)
        print(f"  understood: {describe(domain, act)}")
        if started:
            tracker.observe_user(act)
        else:
            tracker.reset(act)
            started = True
        state = tracker if run_config.state_line else None
        ids += encode_segment(tokenizer, observation_text(text, state), False)
        [turn] = rollout.next_turns(
            model, tokenizer, [ids], run_config.new_tokens, greedy=True, context=context_of(model)
        )
        ids += turn if turn[-1] == tokenizer.eos_token_id else [*turn, tokenizer.eos_token_id]
        written = tokenizer.decode(turn, skip_special_tokens=True).strip()
        action = agent_nlu.action(agent_nlu.parse(written))
        performed = Act("unknown") if action is None else tracker.act(action)
        spoken = written if action is None else nlg.agent(performed)
        if _agent_said(tracker, performed, spoken, config.max_turns):
            return 0


def cmd_serve(args) -> int:
    from dqnlm.dialogue import RuleAgent, build_world, load_domain
    from dqnlm.dialogue.chat import ChatSession
    from dqnlm.dialogue.webchat import ChatServer

    common.check_seed_flag(args.seed)
    if not 0 <= args.port <= 65535:
        raise DQNLMError(f"--port must be in 0..65535, got {args.port}")
    if args.agent != RULE and (Path(args.agent) / "policy").is_dir():
        raise DQNLMError(
            f"{args.agent} is an LM dialogue run; serve shows Q-values of act-level (DQN) "
            "runs and the rule agent; talk to an LM run with `dqnlm dialogue chat`"
        )
    config, agent, _ = _load_agent(args)
    domain = load_domain(config.domain)
    world = build_world(domain)
    goals = world.goals("test")

    def new_session(seed: int) -> ChatSession:
        fresh = RuleAgent(domain) if isinstance(agent, RuleAgent) else agent  # rules keep state
        return ChatSession(domain, world, fresh, config.max_turns, goals[seed % len(goals)])

    host = args.host or "127.0.0.1"
    title = "rule agent" if args.agent == RULE else f"DQN policy {Path(args.agent).name}"
    try:
        server = ChatServer((host, args.port), new_session, title, allow_remote=bool(args.host))
    except OSError as e:
        raise DQNLMError(f"cannot listen on {host}:{args.port}: {e.strerror or e}") from None
    if args.seed is not None:
        server.started = args.seed
    print(f"Talk to the {title} ({domain.name}) at {server.url}  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\n(stopped)")
    finally:
        server.server_close()
    return 0


def cmd_nlu(args) -> int:
    from dqnlm.dialogue import NLU, load_domain
    from dqnlm.dialogue.chat import describe
    from dqnlm.dialogue.schema import bundled_domains

    if bool(args.text) == bool(args.eval):
        raise DQNLMError("give utterances to parse, or --eval FILE, not both")
    if args.text:
        domain = load_domain(args.domain or "movie")
        nlu = NLU(domain)
        for text in args.text:
            act = nlu.parse(text)
            print(f"{text}\n  act: {act}\n  understood: {describe(domain, act)}")
        return 0
    from dqnlm.dialogue.nlu_eval import check_labels, read_labelled, score

    results = {}
    for path in args.eval:
        rows = read_labelled(path)
        names = {r.domain for r in rows}
        if args.domain is None and (len(names) > 1 or not names <= set(bundled_domains())):
            raise DQNLMError(
                f"{path}: its lines name domain(s) {sorted(names)}; a file holds one bundled "
                f"domain ({', '.join(bundled_domains())}), or give --domain"
            )
        domain = load_domain(args.domain or names.pop())
        check_labels(rows, domain, path)
        nlu = NLU(domain)
        parsed = [(r, nlu.parse(r.text)) for r in rows]
        results[path] = {"domain": domain.name, **score([(r.gold, got) for r, got in parsed])}
        if args.errors and not args.json:
            for r, got in parsed:
                if got != r.gold and not (got.intent == r.gold.intent and _same(got, r.gold)):
                    print(f"{path}: {r.text!r}\n    gold {r.gold}\n    got  {got}")
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for path, result in results.items():
        _print_scores(path, result)
    return 0


def _same(a, b) -> bool:
    return a.inform == b.inform and set(a.request) == set(b.request)


def _print_scores(path: str, r: dict) -> None:
    slots, requests = r["slots"], r["requests"]
    print(
        f"{path} ({r['domain']}, {r['utterances']} utterances): slot F1 {slots['f1']:.3f} "
        f"(P {slots['precision']:.3f}, R {slots['recall']:.3f}), request F1 "
        f"{requests['f1']:.3f}, intent accuracy {r['intent_accuracy']:.3f}, "
        f"whole acts {r['act_accuracy']:.3f}"
    )
    print(f"  {'slot':<22}{'precision':>10}{'recall':>9}{'F1':>8}{'gold':>7}")
    for slot, m in r["per_slot"].items():
        print(
            f"  {slot:<22}{m['precision']:>10.3f}{m['recall']:>9.3f}{m['f1']:>8.3f}"
            f"{m['support']:>7}"
        )


DIALOGUE_COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "show": cmd_show,
    "chat": cmd_chat,
    "serve": cmd_serve,
    "nlu": cmd_nlu,
}


def cmd_dialogue(args) -> int:
    return DIALOGUE_COMMANDS[args.dialogue_command](args)
