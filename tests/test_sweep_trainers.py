"""Sweeps over every trainer: a tiny dialogue sweep end to end (skip, grow, refuse, resume),
one-line errors for trainers and their config keys, LM sweep specs, and sweep.json trust."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dqnlm.errors import ConfigError, DQNLMError
from dqnlm.experiments.sweep import SPEC, execute, load_sweep, read_spec, runs_of, sweep
from dqnlm.experiments.trainers import TRAINERS
from dqnlm.metrics import read_metrics
from dqnlm.trust import UntrustedInput

# tests/test_dialogue_dqn.py's TINY, a checkpoint every epoch: a run takes about a second
DIALOGUE = """\
[envs.movie]
trainer = "dialogue"
domain = "movie"
warm_start_dialogues = 20
epochs = 2
dialogues_per_epoch = 10
eval_episodes = 10
eval_interval = 1
hidden_sizes = [32]
batch_size = 16
test_episodes = 5
checkpoint_interval = 1
[variants.hard]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: (mtime_ns, content)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def without(record: dict, *keys: str) -> dict:
    return {k: v for k, v in record.items() if k not in keys}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished two-seed dialogue sweep (do not modify: copy it with ``copy``)."""
    root = tmp_path_factory.mktemp("dialogue-sweep")
    spec = load_sweep(write(root / "s.toml", "seeds = 2\n" + DIALOGUE))
    sweep(spec, root / "out", workers=1, progress=False)
    return root / "out"


def copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


# ----------------------------------------------------------------- a dialogue sweep
def test_a_dialogue_sweep_trains_every_run_and_records_its_trainer(finished):
    spec = json.loads((finished / SPEC).read_text())
    assert spec["envs"]["movie"]["trainer"] == "dialogue"
    assert set(spec["envs"]["movie"]) == {"trainer", "configs"}  # no control bounds
    runs = runs_of(spec)
    assert [(r.trainer, r.seed) for r in runs] == [("dialogue", 0), ("dialogue", 1)]
    kind = TRAINERS["dialogue"]
    results = []
    for run in runs:
        run_dir = run.directory(finished)
        result = json.loads((run_dir / "eval.json").read_text())
        assert {kind.final, *kind.extras} <= result.keys()  # what a report reads is there
        assert kind.curve in read_metrics(run_dir / "metrics.csv")[-1]
        assert (run_dir / "policy.safetensors").is_file()
        assert "epochs = 2" in (run_dir / "config.toml").read_text()
        assert f"seed = {run.seed}" in (run_dir / "config.toml").read_text()
        results.append(without(result, "train_seconds"))
    assert results[0] != results[1]  # two seeds, two runs


def test_a_finished_dialogue_sweep_started_again_trains_nothing(finished, tmp_path):
    out = copy(finished, tmp_path)
    before = snapshot(out / "runs")
    spec = load_sweep(write(tmp_path / "s.toml", "seeds = 2\n" + DIALOGUE))
    sweep(spec, out, workers=1, progress=False)
    assert snapshot(out / "runs") == before


def test_a_grown_dialogue_sweep_trains_only_the_new_seed(finished, tmp_path):
    out = copy(finished, tmp_path)
    before = snapshot(out / "runs")
    grown = load_sweep(write(tmp_path / "s.toml", "seeds = [0, 1, 2]\n" + DIALOGUE))
    dirs = sweep(grown, out, workers=1, progress=False)
    assert [d.name for d in dirs] == ["s0", "s1", "s2"]
    after = snapshot(out / "runs")
    assert {k: v for k, v in after.items() if "/s2/" not in k} == before
    assert (dirs[2] / "eval.json").is_file()
    assert json.loads((out / SPEC).read_text()) == grown


@pytest.mark.parametrize(
    "old, new, names",
    [
        ("epochs = 2", "epochs = 3", ("movie x hard", "epochs")),
        ('domain = "movie"', 'domain = "restaurant"', ("movie x hard", "domain")),
        ("[variants.hard]", '[variants.hard]\ntarget_update = "none"', ("target_update",)),
    ],
    ids=["epochs", "domain", "variant"],
)
def test_a_changed_dialogue_run_is_refused(finished, tmp_path, old, new, names):
    out = copy(finished, tmp_path)
    before = snapshot(out)
    changed = load_sweep(write(tmp_path / "s.toml", "seeds = 2\n" + DIALOGUE.replace(old, new)))
    with pytest.raises(ConfigError, match="different sweep") as error:
        sweep(changed, out, workers=1, progress=False)
    for name in names:
        assert name in str(error.value)
    assert "\n" not in str(error.value)
    assert snapshot(out) == before


def test_a_killed_dialogue_run_resumes_from_its_checkpoint(finished, tmp_path, monkeypatch):
    from dqnlm.dialogue.dqn import DialogueDQN

    spec = json.loads((finished / SPEC).read_text())
    run = runs_of(spec)[0]
    run_dir = tmp_path / "run"
    real_save, real_load = DialogueDQN.save_checkpoint, DialogueDQN.load.__func__

    class Killed(Exception):
        pass

    def save_then_die(self):
        path = real_save(self)
        if self.epoch == 1:
            raise Killed  # stands in for SIGKILL just after the first epoch's checkpoint
        return path

    monkeypatch.setattr(DialogueDQN, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        execute(run, run_dir)
    assert not (run_dir / "eval.json").exists()
    monkeypatch.setattr(DialogueDQN, "save_checkpoint", real_save)
    loaded = []

    def spy(cls, *args, **kwargs):
        loaded.append(args)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(DialogueDQN, "load", classmethod(spy))
    result = execute(run, run_dir)
    assert loaded == [(run_dir,)]  # continued from the checkpoint, not started over
    assert result["summary"].startswith("success_rate ")
    # exactly the run the uninterrupted sweep trained
    full = run.directory(finished)
    rows = [without(r, "time_s") for r in read_metrics(run_dir / "metrics.csv")]
    assert rows == [without(r, "time_s") for r in read_metrics(full / "metrics.csv")]
    assert without(json.loads((run_dir / "eval.json").read_text()), "train_seconds") == without(
        json.loads((full / "eval.json").read_text()), "train_seconds"
    )


# ----------------------------------------------------------------- sweep file errors
@pytest.mark.parametrize(
    "text, names",
    [
        (
            DIALOGUE.replace('"dialogue"', '"dialog"'),
            ("[envs.movie]", "'dialog'", "control, dialogue, lm"),
        ),
        (
            DIALOGUE.replace("epochs = 2", "epoch = 2"),
            ("[envs.movie]", "'epoch'", "did you mean 'epochs'"),
        ),
        (
            DIALOGUE + "total_steps = 100\n",
            ("[envs.movie] x [variants.hard]", "'total_steps'"),
        ),
        ("[base]\ntotal_steps = 100\n" + DIALOGUE, ("[base]", "'total_steps'")),
        (DIALOGUE.replace('domain = "movie"', 'preset = "cartpole"'), ("[envs.movie]", "preset")),
        (
            DIALOGUE.replace("epochs = 2", "epochs = 0"),
            ("[envs.movie] x [variants.hard]", "epochs"),
        ),
        (
            '[envs.imdb]\ntrainer = "lm"\nround = 3\n[variants.a]\n',
            ("[envs.imdb]", "'round'", "did you mean 'rounds'"),
        ),
        ('[envs.imdb]\ntrainer = "lm"\npreset = "sentimen"\n[variants.a]\n', ("sentimen",)),
        (
            '[envs.imdb]\ntrainer = "lm"\n[variants.a]\nbeta = -1\n',
            ("[envs.imdb] x [variants.a]", "beta"),
        ),
    ],
    ids=[
        "unknown-trainer",
        "unknown-dialogue-key",
        "control-key-in-a-dialogue-variant",
        "control-key-in-base",
        "control-table-key",
        "invalid-dialogue-value",
        "unknown-lm-key",
        "unknown-lm-preset",
        "invalid-lm-value",
    ],
)
def test_sweep_file_errors_name_table_and_key(tmp_path, text, names):
    path = write(tmp_path / "bad.toml", "seeds = 1\n" + text)
    with pytest.raises(ConfigError) as error:
        load_sweep(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    for name in names:
        assert name in message


def test_base_and_variants_apply_to_every_trainer(tmp_path):
    text = (
        "seeds = 1\n[base]\nlearning_rate = 1e-3\ngamma = 0.9\n"
        '[envs.cartpole]\nenv_id = "CartPole-v1"\nthreshold = 100\n' + DIALOGUE
    )
    spec = load_sweep(write(tmp_path / "s.toml", text + "batch_size = 8\n"))
    control, dialogue = spec["envs"]["cartpole"], spec["envs"]["movie"]
    assert (control["trainer"], control["threshold"]) == ("control", 100)
    for entry in (control, dialogue):
        config = entry["configs"]["hard"]
        assert (config["learning_rate"], config["gamma"], config["batch_size"]) == (1e-3, 0.9, 8)
    assert dialogue["configs"]["hard"]["epochs"] == 2
    assert [r.trainer for r in runs_of(spec)] == ["control", "dialogue"]


def test_early_stop_only_touches_control(tmp_path):
    """Only control configs have a field that stops early (stop_at_return)."""
    plain = load_sweep(write(tmp_path / "a.toml", "seeds = 1\n" + DIALOGUE))
    early = load_sweep(write(tmp_path / "b.toml", "seeds = 1\nearly_stop = true\n" + DIALOGUE))
    assert plain["envs"] == early["envs"]


# ------------------------------------------------------------------------ LM sweep specs
def test_an_lm_env_applies_its_preset_then_base_table_and_variant(tmp_path):
    from dqnlm.lm.config import PRESETS

    text = (
        "seeds = [0, 1]\n[base]\nrounds = 7\nlearning_rate = 1e-4\n"
        '[envs.imdb]\ntrainer = "lm"\npreset = "sentiment"\nrounds = 3\n'
        "[variants.a]\n[variants.b]\nbeta = 0.2\n"
    )
    spec = load_sweep(write(tmp_path / "s.toml", text))
    entry = spec["envs"]["imdb"]
    assert set(entry) == {"trainer", "configs"} and entry["trainer"] == "lm"
    a, b = entry["configs"]["a"], entry["configs"]["b"]
    assert a["rounds"] == 3  # the env table over [base]
    assert a["learning_rate"] == 1e-4  # [base] over the preset
    assert a["shaping"] is True and a["beta"] == PRESETS["sentiment"]["beta"]  # the preset
    assert b["beta"] == 0.2  # the variant over all
    assert [(r.trainer, r.variant, r.seed) for r in runs_of(spec)][:2] == [
        ("lm", "a", 0),
        ("lm", "a", 1),
    ]


def test_an_lm_sweep_is_checked_without_loading_a_model(tmp_path, monkeypatch):
    from dqnlm.experiments import sweep as sweep_module
    from dqnlm.lm import trainer

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built while checking the sweep")

    monkeypatch.setattr(trainer.LMTrainer, "__init__", no_model)
    text = '[envs.imdb]\ntrainer = "lm"\npreset = "sentiment"\n[variants.a]\n'
    sweep_module.check_runnable(load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + text)))


@pytest.fixture(scope="module")
def lm_files(tmp_path_factory) -> Path:
    """A folder holding a tiny GPT-2 (``model``) and a prompts file (``prompts.jsonl``)."""
    pytest.importorskip("transformers")
    from lm_helpers import save_tiny_lm, write_prompts

    root = tmp_path_factory.mktemp("lm-files")
    save_tiny_lm(root / "model")
    write_prompts(root / "prompts.jsonl", ["a b", "c d e", "f"])
    return root


def tiny_lm_sweep(files: Path, seeds: str = "2") -> str:
    """tests/lm_helpers.py's SMALL_RUN on the tiny GPT-2: a run takes about a second."""
    return f"""\
seeds = {seeds}
[envs.toy]
trainer = "lm"
model = "{files / "model"}"
prompts = "{files / "prompts.jsonl"}"
eval_set = "{files / "prompts.jsonl"}"
reward = "keyword:x"
device = "cpu"
rounds = 4
prompts_per_round = 8
prompt_tokens = 4
new_tokens = 6
updates_per_round = 2
batch_size = 8
replay_capacity = 64
checkpoint_every = 2
eval_prompts = 3
[variants.a]
"""


def test_an_lm_sweep_trains_every_run_and_skips_them_after(lm_files, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(lm_files, out)  # the model inside the sweep dir: no --trust-code needed
    spec = load_sweep(write(tmp_path / "s.toml", tiny_lm_sweep(out)))
    sweep(spec, out, workers=1, progress=False)
    kind, results = TRAINERS["lm"], []
    for run in runs_of(spec):
        run_dir = run.directory(out)
        result = json.loads((run_dir / "eval.json").read_text())
        assert {kind.final, *kind.extras} <= result.keys()
        assert kind.curve in read_metrics(run_dir / "metrics.csv")[-1]
        results.append(result)
    assert [r.trainer for r in runs_of(spec)] == ["lm", "lm"] and results[0] != results[1]
    before = snapshot(out / "runs")
    sweep(load_sweep(tmp_path / "s.toml"), out, workers=1, progress=False)
    assert snapshot(out / "runs") == before


def test_a_killed_lm_run_resumes_from_its_checkpoint(lm_files, tmp_path, monkeypatch):
    from dqnlm.lm.trainer import LMTrainer

    spec = load_sweep(write(tmp_path / "s.toml", tiny_lm_sweep(lm_files, "[7]")))
    run = runs_of(spec)[0]
    full = execute(run, tmp_path / "full")  # the model lies outside: resuming needs trust
    real_save, real_load = LMTrainer.save_checkpoint, LMTrainer.load.__func__

    class Killed(Exception):
        pass

    def save_then_die(self):
        path = real_save(self)
        if self.round == 2:
            raise Killed
        return path

    monkeypatch.setattr(LMTrainer, "save_checkpoint", save_then_die)
    run_dir = tmp_path / "cut"
    with pytest.raises(Killed):
        execute(run, run_dir)
    assert not (run_dir / "eval.json").exists()
    monkeypatch.setattr(LMTrainer, "save_checkpoint", real_save)
    with pytest.raises(UntrustedInput, match="model"):
        execute(run, run_dir)
    loaded = []

    def spy(cls, *args, **kwargs):
        loaded.append(args)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(LMTrainer, "load", classmethod(spy))
    result = execute(run, run_dir, trust_code=True)
    assert loaded == [(run_dir,)]
    assert result["summary"] == full["summary"] and result["summary"].startswith("reward ")
    rows = [without(r, "time_s", "tokens_per_s") for r in read_metrics(run_dir / "metrics.csv")]
    expected = read_metrics(tmp_path / "full" / "metrics.csv")
    assert rows == [without(r, "time_s", "tokens_per_s") for r in expected]


def test_an_lm_reward_module_in_a_sweep_file_needs_trust(tmp_path, monkeypatch):
    (tmp_path / "evilreward.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    text = '[envs.imdb]\ntrainer = "lm"\nreward = "evilreward:score"\n[variants.a]\n'
    path = write(tmp_path / "s.toml", "seeds = 1\n" + text)
    with pytest.raises(UntrustedInput, match="evilreward:score.*--trust-code"):
        load_sweep(path)
    assert not (tmp_path / "ran").exists()
    assert load_sweep(path, trust_code=True)["envs"]["imdb"]["configs"]["a"]["reward"] == (
        "evilreward:score"
    )


# ------------------------------------------------------------ sweep.json read back from disk
def spec_in(out: Path, spec: dict) -> Path:
    out.mkdir(exist_ok=True)
    (out / SPEC).write_text(json.dumps(spec))
    return out


def schema_copy(path: Path) -> Path:
    from importlib import resources

    source = resources.files("dqnlm.dialogue") / "domains" / "movie.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source.read_text())
    return path


def test_a_dialogue_schema_outside_the_sweep_dir_needs_trust(tmp_path):
    schema = schema_copy(tmp_path / "elsewhere" / "films.json")
    text = DIALOGUE.replace('"movie"', json.dumps(str(schema)))
    spec = load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + text))
    assert spec["envs"]["movie"]["configs"]["hard"]["domain"] == str(schema)
    out = spec_in(tmp_path / "out", spec)
    with pytest.raises(UntrustedInput) as error:
        read_spec(out)
    message = str(error.value)
    assert str(out / SPEC) in message and str(schema) in message and "--trust-code" in message
    assert read_spec(out, trust_code=True)["envs"]["movie"] == spec["envs"]["movie"]


def test_a_dialogue_schema_inside_the_sweep_dir_is_read_as_the_runs_read_it(tmp_path):
    out = tmp_path / "out"
    schema = schema_copy(out / "films.json")
    spec = load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + DIALOGUE))
    spec["envs"]["movie"]["configs"]["hard"]["domain"] = "films.json"  # relative: to out
    spec_in(out, spec)
    assert read_spec(out)["envs"]["movie"]["configs"]["hard"]["domain"] == str(schema)
    spec["envs"]["movie"]["configs"]["hard"]["domain"] = "../films.json"
    spec_in(out, spec)
    with pytest.raises(UntrustedInput, match="films.json"):
        read_spec(out)


def test_an_lm_model_outside_the_sweep_dir_needs_trust(tmp_path):
    model = tmp_path / "elsewhere" / "model"
    model.mkdir(parents=True)
    text = f'[envs.imdb]\ntrainer = "lm"\nmodel = "{model}"\n[variants.a]\n'
    out = spec_in(tmp_path / "out", load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + text)))
    with pytest.raises(UntrustedInput, match="model"):
        read_spec(out)
    assert read_spec(out, trust_code=True)["envs"]["imdb"]["trainer"] == "lm"


def test_an_older_sweep_json_without_trainers_is_a_control_sweep(tmp_path):
    text = '[envs.cartpole]\nenv_id = "CartPole-v1"\nthreshold = 100\n[variants.a]\n'
    spec = load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + text))
    del spec["envs"]["cartpole"]["trainer"]
    out = spec_in(tmp_path / "out", spec)
    read = read_spec(out)
    assert read["envs"]["cartpole"]["trainer"] == "control"
    assert [r.trainer for r in runs_of(read)] == ["control"]


def test_an_unknown_trainer_in_sweep_json_is_one_error(tmp_path):
    spec = load_sweep(write(tmp_path / "s.toml", "seeds = 1\n" + DIALOGUE))
    spec["envs"]["movie"]["trainer"] = "chess"
    out = spec_in(tmp_path / "out", spec)
    with pytest.raises(DQNLMError, match=r"sweep.json is not a valid sweep record.*'chess'"):
        read_spec(out)


def test_what_a_report_reads_exists_in_each_trainers_outputs():
    from dqnlm.control.metrics import COLUMNS as CONTROL_COLUMNS
    from dqnlm.dialogue.dqn import COLUMNS as DIALOGUE_COLUMNS
    from dqnlm.lm.evaluate import EVAL_KEYS
    from dqnlm.lm.trainer import COLUMNS as LM_COLUMNS

    assert TRAINERS["control"].curve in CONTROL_COLUMNS
    assert TRAINERS["dialogue"].curve in DIALOGUE_COLUMNS
    assert TRAINERS["lm"].curve in LM_COLUMNS
    assert {TRAINERS["lm"].final, *TRAINERS["lm"].extras} <= set(EVAL_KEYS)
    assert TRAINERS["control"].summary({"mean_return": 123.456}) == "mean_return 123.5"
    assert TRAINERS["lm"].summary({"reward": 0.25}) == "reward +0.250"
