"""The star-graph task: the generator, its split, the path reward, and a tiny run."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from dqnlm.cli import main  # noqa: E402
from dqnlm.errors import ConfigError, DQNLMError  # noqa: E402
from dqnlm.lm import stargraph  # noqa: E402
from dqnlm.lm.stargraph import StarGraphs, parse_prompt, path_scores, solve  # noqa: E402


@pytest.mark.parametrize(("d", "length", "n"), [(2, 5, 50), (3, 5, 50), (5, 3, 20), (2, 2, 5)])
def test_graphs_are_stars_with_the_answer_on_one_arm(d, length, n):
    family = StarGraphs(d, length, n).check()
    for graph in family.training(50, np.random.default_rng(0)):
        children = {}
        for a, b in graph.edges:
            children.setdefault(a, []).append(b)
        nodes = {x for edge in graph.edges for x in edge}
        assert len(graph.edges) == d * (length - 1) and len(nodes) == 1 + d * (length - 1)
        assert all(0 <= x < n for x in nodes)
        assert len(children[graph.start]) == d  # the centre has d arms ...
        assert all(len(c) == 1 for node, c in children.items() if node != graph.start)
        assert (
            len(graph.path) == length
            and graph.path[0] == graph.start
            and graph.path[-1] == graph.goal
        )
        assert all(b in children[a] for a, b in zip(graph.path, graph.path[1:]))
        assert graph.goal not in children  # ... and the goal ends one of them
        assert solve(graph.prompt()) == list(graph.path)
        assert path_scores([graph.prompt()], [graph.answer()]) == [1.0]


def test_edges_are_listed_in_random_order():
    family = StarGraphs(2, 5, 50)
    firsts = [g.edges[0][0] == g.start for g in family.training(200, np.random.default_rng(1))]
    assert 0.05 < np.mean(firsts) < 0.5  # a centre edge first 2 times in 8 by chance


def test_held_out_graphs_never_appear_in_training():
    family = StarGraphs(2, 2, 6)  # 6 * 5 * 4 / 2 * 2 = 120 tasks: collisions are certain
    held = {g.key() for g in family.held_out()}
    assert len(held) == 24  # a fifth of a small family
    training = family.training(500, np.random.default_rng(3))
    assert held.isdisjoint(g.key() for g in training)
    assert len({g.key() for g in training[:96]}) == 96  # no repeats before the 96 others
    big = StarGraphs(2, 5, 50)
    assert {g.key() for g in big.held_out()}.isdisjoint(g.key() for g in big.training(2000))
    assert [g.prompt() for g in big.held_out(5)] == [g.prompt() for g in big.held_out(5)]


def test_the_format_is_the_papers():
    graph = stargraph.Graph(((32, 3), (16, 12), (3, 19), (32, 34)), 32, 12, (32, 34, 12))
    assert graph.prompt() == "32,3|16,12|3,19|32,34/32,12="
    assert graph.answer() == "32,34,12"
    children, start, goal = parse_prompt("32,3|16,12|3,19|32,34 / 32,12 =")
    assert (children[32], start, goal) == ([3, 34], 32, 12)


PROMPT = "0,1|1,2|0,3|3,4/0,4="  # the path is 0,3,4


@pytest.mark.parametrize(
    ("answer", "exact", "partial", "first"),
    [
        ("0,3,4", 1.0, 1.0, True),
        (" 0 , 3 , 4 ", 1.0, 1.0, True),  # spaces between tokens do not matter
        ("0,1,2", 0.0, 1 / 3, False),  # wrong first step
        ("0,3", 0.0, 2 / 3, True),  # stopped short
        ("0,3,4,4", 0.0, 3 / 4, True),  # one node too many
        ("0,3,,4", 0.0, 0.0, False),  # not a list of nodes
        ("", 0.0, 0.0, False),
        ("zero", 0.0, 0.0, False),
    ],
)
def test_path_reward_on_hand_built_answers(answer, exact, partial, first):
    assert path_scores([PROMPT], [answer]) == [exact]
    assert path_scores([PROMPT], [answer], partial=True) == [pytest.approx(partial)]
    assert stargraph.first_step_correct(PROMPT, answer) == first


def test_bad_families_and_prompts_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="nodes=8 is too few"):
        StarGraphs(3, 4, 8).check()
    with pytest.raises(ConfigError, match="degree must be >= 2"):
        StarGraphs(1, 4, 50).check()
    with pytest.raises(DQNLMError, match="not a star-graph prompt"):
        path_scores(["hello"], ["0,1"])


def test_word_tokenizer_reads_the_format_as_the_papers_numeral_tokenizer():
    """One token per node, bar, slash and equals sign; commas dropped (27 prompt tokens
    for G(2, 5), as in Next-Token-Failures); answers decode to nodes the reward reads."""
    tok = stargraph.word_tokenizer(50)
    assert StarGraphs(2, 5, 50).prompt_tokens == 27
    for family in (StarGraphs(2, 5, 50), StarGraphs(3, 4, 50)):
        graph = family.held_out(1)[0]
        ids = tok(graph.prompt(), add_special_tokens=False)["input_ids"]
        assert len(ids) == family.prompt_tokens and tok.eos_token_id not in ids  # no unknowns
        answer = tok(graph.answer(), add_special_tokens=False)["input_ids"]
        assert len(answer) + 1 == family.new_tokens  # plus end-of-text
        assert path_scores([graph.prompt()], [tok.decode(answer)]) == [1.0]


TINY = [
    "--set", "degree=2", "--set", "arm_length=2", "--set", "nodes=8",
    "--set", "device=cpu", "--set", "eval_prompts=40",
]  # fmt: skip


def test_a_tiny_family_is_learned_end_to_end(tmp_path, monkeypatch, capsys):
    """G(2, 2) over 8 labels, from a barely pretrained model: the answer is "start,goal",
    which Q-learning must find; held-out path accuracy must rise well above the start."""
    monkeypatch.setenv("DQNLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(stargraph, "PretrainStarConfig", _quick_pretraining)
    before = _eval(
        capsys, ["lm", "eval", "--task", "stargraph", *TINY, "--json", "--n", "40", "--no-progress"]
    )
    run = tmp_path / "run"
    args = ["lm", "train", "--task", "stargraph", *TINY, "--run-dir", str(run), "--no-progress"]
    assert main([*args, "--no-tensorboard", "--rounds", "40", "--set", "learning_rate=1e-3"]) == 0
    capsys.readouterr()
    after = _eval(capsys, ["lm", "eval", str(run), "--json", "--n", "40", "--no-progress"])
    assert set(after) >= {"path_accuracy", "first_step_accuracy", "kl", "n", "reward"}
    assert after["n"] == 40 and before["n"] == 40
    assert before["path_accuracy"] < 0.6
    assert after["path_accuracy"] >= before["path_accuracy"] + 0.3, (before, after)
    saved = json.loads((run / "eval.json").read_text())
    assert saved["path_accuracy"] == pytest.approx(after["path_accuracy"])


_PRETRAIN = stargraph.PretrainStarConfig


def _quick_pretraining(**kwargs):
    """A 1-layer model after 80 steps: it knows the format, and the answer 3 times in 10."""
    quick = dict(steps=80, batch_size=32, n_layer=1, n_embd=32, n_head=2, eval_every=60)
    return _PRETRAIN(**{**quick, **kwargs})


def _eval(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
