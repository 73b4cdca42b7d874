"""Domain schemas: the bundled domains, the action layout, and validation errors
that name the file and the field."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from dqnlm.dialogue.schema import bundled_domains, load_domain, parse_domain
from dqnlm.errors import ConfigError


@pytest.fixture(scope="module")
def raw():
    return json.loads(Path(load_domain("movie").source).read_text())


def write(tmp_path, data, name="domain.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def error(tmp_path, data, name="domain.json") -> str:
    path = write(tmp_path, data, name)
    with pytest.raises(ConfigError) as info:
        load_domain(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_movie_domain_is_bundled_and_complete():
    assert bundled_domains() == ["movie", "restaurant"]
    domain = load_domain("movie")
    assert domain.name == "movie"
    assert len(domain.acts) == 11
    for slot in ("moviename", "theater", "starttime", "date", "city", "state", "zip"):
        assert domain.slot(slot).informable and domain.slot(slot).in_kb
    assert domain.slot("numberofpeople").informable and not domain.slot("numberofpeople").in_kb
    assert domain.ticket_slot == "ticket" and domain.booking_slot == "taskcomplete"
    assert all(len(domain.slot(s).values) >= 4 for s in domain.informable)
    # TC-Bot's RequestBasicsDialogueAgent slots, in its order
    assert domain.rule_agent_slots == (
        "moviename",
        "starttime",
        "city",
        "date",
        "theater",
        "numberofpeople",
    )


def test_rule_agent_slots_default_to_the_required_constraints(raw):
    data = copy.deepcopy(raw)
    del data["rule_agent_slots"]
    domain = parse_domain(data)
    assert domain.rule_agent_slots == ("moviename", "numberofpeople")


def test_agent_actions_are_enumerated_in_a_fixed_order():
    domain = load_domain("movie")
    actions = [str(a) for a in domain.agent_actions]
    assert len(actions) == 37 == len(set(actions))
    assert actions[:6] == [f"{a}()" for a in domain.agent_acts]
    assert actions[6] == "request(moviename)"
    assert actions[-1] == "inform(taskcomplete)"
    assert "inform(ticket)" not in actions
    assert "request(numberofpeople)" in actions and "inform(price)" in actions
    assert [str(a) for a in load_domain("movie").agent_actions] == actions


def test_yaml_and_json_files_load_the_same(tmp_path, raw):
    pytest.importorskip("yaml")
    json_domain = load_domain(write(tmp_path, raw))
    yaml_domain = load_domain(write(tmp_path, json.dumps(raw), "domain.yaml"))  # JSON is YAML
    assert yaml_domain.agent_actions == json_domain.agent_actions
    assert yaml_domain.slots == json_domain.slots


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path, raw, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    assert "needs PyYAML" in error(tmp_path, json.dumps(raw), "domain.yml")


def test_unknown_name_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown domain 'films'.*movie"):
        load_domain("films")
    assert "not valid JSON (line 2" in error(tmp_path, '{\n  "name": }')
    assert "(top level): must be an object" in error(tmp_path, "[1, 2]")


def mutate(raw, change):
    data = copy.deepcopy(raw)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["agent_acts"].append("dance"), "agent_acts: unknown act 'dance'"),
        (lambda d: d["acts"].remove("deny"), "acts: must include 'deny'"),
        (lambda d: d["acts"].append("inform"), "acts: lists 'inform' twice"),
        (lambda d: d["agent_acts"].append("request"), "agent_acts: 'request' takes a slot"),
        (lambda d: d.__setitem__("ticket_slot", "tikcet"), "ticket_slot: unknown slot 'tikcet'"),
        (
            lambda d: d["generation"]["required_constraints"].append("moviname"),
            "generation.required_constraints: unknown informable slot 'moviname' (did you mean 'moviename'?)",
        ),
        (
            lambda d: d["first_turn_slots"].append("price"),
            "first_turn_slots: unknown informable slot 'price'",
        ),
        (
            lambda d: d["rule_agent_slots"].append("price"),
            "rule_agent_slots: unknown informable slot 'price'",
        ),
        (
            lambda d: d["rule_agent_slots"].append("theatre"),
            "rule_agent_slots: unknown informable slot 'theatre' (did you mean 'theater'?)",
        ),
        (
            lambda d: d.__setitem__("rule_agent_slots", "moviename"),
            "rule_agent_slots: must be a list of non-empty strings",
        ),
        (
            lambda d: d["generation"].__setitem__("kb_size", "big"),
            "generation.kb_size: must be an integer",
        ),
        (
            lambda d: d["generation"].__setitem__("num_goals", 0),
            "generation.num_goals: must be in [1, 100,000], got 0",
        ),
        (
            lambda d: d["generation"].__setitem__("test_fraction", 1.0),
            "generation.test_fraction: must be in (0, 1)",
        ),
        (
            lambda d: d["generation"].__setitem__("requests", [2, 1]),
            "generation.requests: must be [min, max]",
        ),
        (
            lambda d: d["generation"].__setitem__("extra_constraints", [0, 40]),
            "generation.extra_constraints: max 40 exceeds",
        ),
        (lambda d: d["generation"].pop("seed"), "generation.seed: is missing"),
        (
            lambda d: d["slots"]["city"].__setitem__("informable", "yes"),
            "slots.city.informable: must be true or false",
        ),
        (
            lambda d: d["slots"]["city"].__setitem__("values", "ashford"),
            "slots.city.values: must be a list",
        ),
        (lambda d: d["slots"]["city"].__setitem__("colour", 1), "slots.city.colour: unknown field"),
        (
            lambda d: d["slots"]["city"].__setitem__("values", []),
            "slots.city.values: must list values",
        ),
        (lambda d: d["slots"]["genre"].pop("values"), "slots.genre.values: must list values"),
        (
            lambda d: d["slots"]["city"].__setitem__("determined_by", "theatre"),
            "slots.city.determined_by: unknown slot 'theatre' (did you mean 'theater'?)",
        ),
        (
            lambda d: d["slots"]["theater"].__setitem__("determined_by", "zip"),
            "slots.theater.determined_by: the determined_by chain loops",
        ),
        (
            lambda d: d["slots"]["ticket"].__setitem__("in_kb", True),
            "ticket_slot: slot 'ticket' must be requestable, not informable and have in_kb false",
        ),
        (lambda d: d.__setitem__("extra", 1), "extra: unknown field"),
        (
            lambda d: d["templates"]["user"]["inform"].__setitem__("price", ["It is {value}."]),
            "templates.user.inform.price: slot 'price' is not informable",
        ),
        (
            lambda d: d["templates"]["user"]["inform"].__setitem__("city", ["I live in town."]),
            "templates.user.inform.city: template 'I live in town.' must contain {value}",
        ),
        (
            lambda d: d["templates"]["agent"]["acts"].__setitem__("shrug", ["Meh."]),
            "templates.agent.acts: unknown act 'shrug'",
        ),
    ],
)
def test_each_problem_names_the_file_and_field(tmp_path, raw, change, needle):
    assert needle in error(tmp_path, mutate(raw, change))


def test_duplicate_slots_are_caught(tmp_path, raw):
    text = json.dumps(raw).replace(
        '"slots": {', '"slots": {"city": {"informable": true, "values": ["x"]}, ', 1
    )
    assert "slots.city: appears twice" in error(tmp_path, text)


def test_every_problem_is_reported_at_once(tmp_path, raw):
    def change(d):
        d["agent_acts"].append("dance")
        d["generation"]["kb_size"] = -1
        d["slots"]["zip"]["label"] = 5

    message = error(tmp_path, mutate(raw, change))
    assert (
        "agent_acts" in message and "generation.kb_size" in message and "slots.zip.label" in message
    )


def test_parse_domain_accepts_data_without_a_file(raw):
    domain = parse_domain(raw, source="inline")
    assert domain.source == "inline" and domain.slot_names == load_domain("movie").slot_names
