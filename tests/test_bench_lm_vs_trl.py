"""benchmarks/lm_vs_trl.py: its pure helpers (arguments, order, summary), no training."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_vs_trl.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("lm_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = ["--task", "sentiment", "--seeds", "0", "1", "--budget-s", "30", "--out", "x"]


def test_arguments_parse_with_defaults(bench):
    args = bench.parse_args(BASE)
    assert args.methods == ["dqnlm", "grpo", "rloo"]
    assert args.eval_n == 100 and args.threads == 2 and args.lr == []


@pytest.mark.parametrize(
    "extra",
    [
        ["--budget-s", "0"],
        ["--budget-s", "nan"],
        ["--eval-n", "0"],
        ["--threads", "0"],
        ["--seeds", "1", "1"],
        ["--seeds", "-1"],
        ["--methods", "grpo", "grpo"],
        ["--methods", "ppo"],
        ["--lr", "dqnlm=1e-3"],
        ["--lr", "grpo=-1"],
        ["--lr", "grpo"],
        ["--jobs", "0"],
        ["--set", "degree=x"],
        ["--set", "no_such_key=1"],
        ["--task", "stargraph", "--set", "nodes=5"],
    ],
)
def test_bad_arguments_exit_with_a_usage_error(bench, extra, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(BASE + extra)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_task_seeds_and_budget_are_required_unless_summarising(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", "x", "--task", "sentiment"])
    assert bench.parse_args(["--out", "x", "--summarise-only"]).summarise_only
    assert bench.parse_args(["--out", "x", "--one", "grpo", "3"]).one == ["grpo", "3"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", "x", "--one", "ppo", "3"])


def test_lr_overrides_parse(bench):
    args = bench.parse_args(BASE + ["--lr", "grpo=1e-5", "--lr", "rloo=2e-5"])
    assert dict(args.lr) == {"grpo": 1e-5, "rloo": 2e-5}


def test_run_order_rotates_methods_per_seed(bench):
    order = bench.run_order(["dqnlm", "grpo", "rloo"], [0, 1, 2, 3])
    seeds = [[m for m, s in order if s == seed] for seed in range(4)]
    assert seeds == [
        ["dqnlm", "grpo", "rloo"],
        ["grpo", "rloo", "dqnlm"],
        ["rloo", "dqnlm", "grpo"],
        ["dqnlm", "grpo", "rloo"],
    ]
    assert bench.run_order(["grpo"], [5, 6]) == [("grpo", 5), ("grpo", 6)]


def test_smooth_is_a_trailing_mean(bench):
    assert bench.smooth([1.0, 3.0, 5.0, 7.0], window=2) == [1.0, 2.0, 4.0, 6.0]
    assert bench.smooth([], window=3) == []


def test_time_to_reach_uses_the_smoothed_curve(bench):
    curve = [{"time_s": 10.0 * i, "reward": r} for i, r in enumerate([0.0, 1.0, 0.0, 1.0, 1.0])]
    assert bench.time_to_reach(curve, 0.9, window=1) == 10.0
    assert bench.time_to_reach(curve, 0.9, window=2) == 40.0
    assert bench.time_to_reach(curve, 2.0, window=1) is None
    assert bench.time_to_reach([{"time_s": 1.0, "reward": None}], 0.0) is None


def _run(method, seed, reward, curve=(), status="ok"):
    if status != "ok":
        return {"method": method, "seed": seed, "status": status, "error": "boom"}
    return {
        "method": method,
        "seed": seed,
        "status": "ok",
        "reward": reward,
        "kl": 2.0,
        "distinct_1": 0.4,
        "distinct_2": 0.8,
        "ref_perplexity": 50.0,
        "n": 8,
        "train_s": 100.0,
        "steps": 10,
        "tokens": 1000,
        "tokens_per_s": 10.0,
        "peak_rss_mb": 900.0,
        "wall_s": 130.0,
        "curve": [{"time_s": t, "tokens": 100 * t, "reward": r, "kl": 1.0} for t, r in curve],
    }


def test_medians_skip_failed_runs(bench):
    runs = [
        _run("grpo", 0, 0.2),
        _run("grpo", 1, 0.4),
        _run("grpo", 2, 0.9),
        _run("grpo", 3, None, status="failed"),
        _run("rloo", 0, None, status="failed"),
    ]
    meds = bench.medians(runs)
    assert set(meds) == {"grpo"}
    assert meds["grpo"]["n"] == 3 and meds["grpo"]["reward"] == 0.4


def test_reach_ratios_per_seed_and_never(bench):
    early = [(10.0, 0.1), (20.0, 0.5), (30.0, 0.8)]  # 5-step mean reaches 0.4 at 30 s
    never = [(10.0, 0.0), (20.0, 0.1)]
    runs = [
        _run("dqnlm", 0, 0.7, early),
        _run("dqnlm", 1, 0.2, never),
        _run("grpo", 0, 0.4),
    ]
    ratios = bench.reach_ratios(runs, bench.medians(runs), budget_s=100.0)
    assert set(ratios) == {"grpo"}
    r = ratios["grpo"]
    assert r["target_reward"] == 0.4
    assert r["per_seed"] == {"0": pytest.approx(0.3), "1": None}
    # the median of (0.3, never) is never: a run that did not get there counts as slower
    assert r["median"] is None and not r["median_reached"]
    runs.append(_run("dqnlm", 2, 0.7, early))
    r = bench.reach_ratios(runs, bench.medians(runs), budget_s=100.0)["grpo"]
    assert r["median"] == pytest.approx(0.3) and r["median_reached"]


def test_markdown_table_has_a_row_per_run_and_per_median(bench):
    runs = [_run("dqnlm", 0, 0.8), _run("grpo", 0, 0.5), _run("rloo", 0, None, status="failed")]
    table = bench.markdown_table(runs, bench.medians(runs))
    lines = table.splitlines()
    assert len(lines) == 2 + 3 + 2
    assert lines[2].startswith("| dqnlm | 0 | 0.800 |")
    assert "failed" in lines[4]
    assert lines[-1].startswith("| **grpo median** | n=1 | 0.500 |")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_fmt_renders_missing_values_as_a_dash(bench):
    assert bench._fmt(None, "{:.2f}") == "-"
    assert bench._fmt(math.nan, "{:.2f}") == "-"
    assert bench._fmt(1.234, "{:.2f}") == "1.23"


def test_check_pinned_names_what_differs(bench):
    saved = {"task": "sentiment", "budget_s": 30.0, "eval_n": 8, "threads": 2, "settings": {}}
    assert bench.check_pinned(saved, dict(saved)) == []
    assert bench.check_pinned(saved, {**saved, "budget_s": 60.0}) == ["budget_s"]


def test_dqnlm_curve_reads_metrics_csv(bench, tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,time_s,tokens,updates,reward,kl,td_loss\n1,3.5,900,4,0.2,0.1,0.01\n"
        "2,7.0,1800,8,0.3,,0.01\n"
    )
    curve = bench.read_dqnlm_curve(path)
    assert curve == [
        {"step": 1.0, "time_s": 3.5, "tokens": 900.0, "reward": 0.2, "kl": 0.1},
        {"step": 2.0, "time_s": 7.0, "tokens": 1800.0, "reward": 0.3, "kl": None},
    ]


def test_fit_prompts_keeps_the_last_tokens(bench):
    class Words:  # a tokenizer with one token per word
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [t.split() for t in texts]}

        def decode(self, ids):
            return " ".join(ids)

    assert bench.fit_prompts(Words(), ["a b c d", "e  f"], 3) == ["b c d", "e  f"]


def test_summarise_writes_json_markdown_and_figures(bench, tmp_path):
    (tmp_path / "runs").mkdir()
    settings = bench.task_settings("sentiment")
    benchmark = {"task": "sentiment", "budget_s": 100.0, "eval_n": 8, "threads": 2}
    (tmp_path / "benchmark.json").write_text(json.dumps({**benchmark, "settings": settings}))
    curve = [(10.0, 0.1), (50.0, 0.5), (100.0, 0.7)]
    for run in (
        _run("dqnlm", 0, 0.7, curve),
        _run("grpo", 0, 0.3, curve),
        _run("rloo", 0, None, status="failed"),
    ):
        name = f"{run['method']}-s{run['seed']}.json"
        (tmp_path / "runs" / name).write_text(json.dumps(run))
    summary = bench.summarise(tmp_path)
    assert summary["medians"]["dqnlm"]["reward"] == 0.7
    assert "curve" not in summary["runs"][0]
    text = (tmp_path / "summary.md").read_text()
    assert "| **dqnlm median** |" in text and f"beta` = {settings['beta']:g}" in text
    assert "vs grpo (target 0.300)" in text
    for png in ("reward_vs_time.png", "reward_vs_tokens.png"):
        assert (tmp_path / png).stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["figures"] == [
        "reward_vs_time.png",
        "reward_vs_tokens.png",
    ]


@pytest.mark.parametrize("task", ["sentiment", "smollm2"])
def test_settings_come_from_the_dqnlm_preset(bench, task):
    from dqnlm.lm.config import preset_config

    settings = bench.task_settings(task, {"rloo": 5e-5})
    cfg = preset_config(settings["preset"])
    for key in ("beta", "temperature", "top_k", "top_p", "prompt_tokens", "new_tokens"):
        assert settings[key] == getattr(cfg, key)
    assert settings["min_new_tokens"] == cfg.min_new_tokens
    assert settings["lora"] == (task == "smollm2")
    assert settings["lora_rank"] == (cfg.lora_rank if task == "smollm2" else 0)
    lr = settings["trl"]["learning_rate"]
    assert lr["rloo"] == 5e-5 and lr["grpo"] == bench.TRL_SETTINGS[task]["lr"]["grpo"]


def test_dqnlm_command_carries_the_budget(bench, tmp_path):
    settings = bench.task_settings("sentiment")
    cmd = bench.dqnlm_command(
        {"settings": settings, "threads": 2, "budget_s": 30.0, "eval_n": 8}, "dqnlm", 3, tmp_path
    )
    assert cmd[1:6] == ["-m", "dqnlm", "lm", "train", "--preset"]
    assert "--model" not in cmd  # the preset's own model (the embedded GPT-2)
    text = " ".join(cmd)
    assert "--seed 3 " in text and "--threads 2 " in text and "--no-progress" in text
    for setting in ("max_seconds=30.0", "eval_prompts=8", "rounds=100000"):
        assert f"--set {setting}" in text


def test_settings_lines_say_whether_the_chat_template_applied(bench):
    benchmark = {
        "task": "smollm2",
        "budget_s": 60.0,
        "eval_n": 4,
        "threads": 2,
        "settings": {**bench.task_settings("smollm2"), "chat_template": True},
    }
    assert "chat template applied" in "\n".join(
        bench.settings_lines(benchmark, [{"chat_template_applied": True}])
    )
    assert "template not applied (the tokenizer has none)" in "\n".join(
        bench.settings_lines(benchmark, [{"chat_template_applied": False}])
    )
    text = "\n".join(bench.settings_lines(benchmark))
    assert "LoRA r=16" in text and "beta` = 0.1 " in text


def test_stargraph_runs_every_method_and_takes_a_family(bench):
    args = bench.parse_args([*BASE, "--task", "stargraph", "--set", "degree=3", "--jobs", "2"])
    assert args.methods == list(bench.METHODS) and args.jobs == 2
    assert args.overrides == {"degree": 3}
    cfg = bench.task_config("stargraph", args.overrides, seed=4)
    assert (cfg.degree, cfg.seed, cfg.reward) == (3, 4, "stargraph")
    assert cfg.prompt_tokens == 3 * 3 * 4 + 3  # the family's prompt length, fitted


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("dqnlm", []),
        ("dqnlm-hard", ["target_update=hard", "target_update_period=20"]),
        ("dqnlm-none", ["target_update=none"]),
    ],
)
def test_dqnlm_arms_differ_only_in_their_target_network(bench, tmp_path, method, expected):
    settings = {**bench.task_settings("sentiment"), "overrides": {"degree": 3}}
    benchmark = {"settings": settings, "threads": 1, "budget_s": 9.0, "eval_n": 4}
    cmd = bench.dqnlm_command(benchmark, method, 0, tmp_path)
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert "degree=3" in sets
    assert [s for s in sets if s.startswith("target_update")] == expected


def test_markdown_table_shows_task_columns_only_when_some_run_has_them(bench):
    run = {"method": "dqnlm", "seed": 0, "status": "ok", "reward": 0.5, "kl": 1.0}
    assert "path accuracy" not in bench.markdown_table([run], {})
    table = bench.markdown_table([{**run, "path_accuracy": 0.75}], {})
    assert "path accuracy" in table and "0.750" in table


def test_best_of_n_keeps_the_sample_the_task_reward_prefers(bench, tmp_path, monkeypatch):
    """G(2, 2) over 8 labels from a briefly pretrained model: one sample is often wrong, the
    best of eight by the path reward is right far more often."""
    import functools

    from dqnlm.lm import stargraph

    monkeypatch.setenv("DQNLM_CACHE", str(tmp_path))
    quick = dict(steps=300, batch_size=32, n_layer=1, n_embd=32, n_head=2, eval_every=300)
    monkeypatch.setattr(
        stargraph, "PretrainStarConfig", functools.partial(stargraph.PretrainStarConfig, **quick)
    )
    settings = bench.task_settings("stargraph", overrides={"arm_length": 2, "nodes": 8})
    assert Path(settings["model"]).is_relative_to(tmp_path)  # pretrained on first use

    def best_of(n: int) -> dict:
        trl = {**settings["trl"], "num_generations": n}
        benchmark = {"task": "stargraph", "threads": 1, "eval_n": 30}
        return bench.run_best_of_n({**benchmark, "settings": {**settings, "trl": trl}}, 0)

    one, eight = best_of(1), best_of(8)
    assert one["n"] == eight["n"] == 30 and eight["samples_per_prompt"] == 8
    assert eight["reward"] == pytest.approx(eight["path_accuracy"])  # the reward is the path
    assert one["path_accuracy"] + 0.2 < eight["path_accuracy"], (one, eight)
    assert eight["kl"] == pytest.approx(math.log(8) - 7 / 8) and one["kl"] == 0
