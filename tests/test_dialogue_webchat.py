"""Talking to agents: the chat session (goal, what it understood, corrections, Q-values,
anything a person types), `dqnlm dialogue chat`, and the `serve` web page: its JSON API,
its limits, and a real headless Chromium that loads the page and sends two turns."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import Browser, find_browser

from dqnlm.cli import main
from dqnlm.dialogue import Act, RuleAgent, build_world, load_domain
from dqnlm.dialogue.chat import REPROMPT, ChatSession
from dqnlm.dialogue.dqn import load_policy
from dqnlm.dialogue.webchat import MAX_REQUEST_BYTES, ChatServer, is_loopback

TINY = ["--set", "epochs=2", "--set", "dialogues_per_epoch=20", "--set", "warm_start_dialogues=20",
        "--set", "eval_episodes=20", "--no-progress", "--no-tensorboard"]  # fmt: skip


@pytest.fixture(scope="module")
def world():
    domain = load_domain("movie")
    return domain, build_world(domain)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("webchat") / "run"
    assert main(["dialogue", "train", *TINY, "--run-dir", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def policy(run_dir):
    return load_policy(run_dir)[1]


def session_of(world, agent=None, goal: int = 0) -> ChatSession:
    domain, built = world
    agent = agent or RuleAgent(domain)
    return ChatSession(domain, built, agent, 40, built.goals("test")[goal])


# ---------------------------------------------------------------------- the session
def test_a_turn_says_what_was_understood(world):
    session = session_of(world)
    reply = session.say("hi, we are 3 people, the 7:30pm show please")
    assert reply.understood == "3 people, start time 7:30 pm"
    assert reply.action == "request(moviename)" and reply.agent.endswith("?")
    assert reply.q_values is None  # the rule agent has none
    assert session.state_summary()["known"] == {"number of people": "3", "start time": "7:30 pm"}


def test_a_later_value_corrects_an_earlier_one(world):
    session = session_of(world)
    session.say("3 people please")
    reply = session.say("no, four of us actually")
    assert reply.changed == ["3 people -> 4 people"]
    assert not reply.done  # a correction before any booking is not a rejected booking
    assert session.tracker.known["numberofpeople"] == "4"


def test_the_goal_shows_what_the_agent_has(world):
    session = session_of(world)
    goal = session.goal
    slot, value = next(iter(goal.constraints.items()))
    assert all(item["status"] == "todo" for item in session.goal_status())
    session.say(session.nlg.user(Act("inform", {slot: value})))
    assert session.goal_status()[0]["status"] == "stated"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "I did not get any text."),
        ("   \t  ", "I did not get any text."),
        ("\x00\x01\x1b\x7f", "I did not get any text."),
        ("żółć 日本語のテキストです", "I only understand English"),
        ("Мне нужны два билета", "I only understand English"),
        ("asdf qwer", "Tell me what you want in your own words."),
    ],
)
def test_unreadable_lines_get_a_polite_answer_and_cost_no_turn(world, text, hint):
    session = session_of(world)
    reply = session.say(text)
    assert (
        reply.agent.startswith(REPROMPT) and hint in reply.agent and "For example:" in reply.agent
    )
    assert reply.action is None and not session.started


def test_a_megabyte_paste_is_read_in_part(world):
    session = session_of(world)
    reply = session.say("2 tickets please " + "blah " * 250_000)
    assert "I read only the first 2,000" in reply.note
    assert reply.understood == "2 people" and reply.action is not None


def test_invalid_utf8_bytes_are_read(world):
    assert session_of(world).say(b"\xff\xfe 2 tickets").understood == "2 people"


def test_q_values_mark_the_chosen_and_the_masked(world, policy):
    session = session_of(world, policy)
    constraints = list(session.goal.constraints.items())  # a record matches the goal
    session.say(session.nlg.user(Act("inform", dict(constraints[:1]))))
    reply = session.say(session.nlg.user(Act("inform", dict(constraints[1:]))))
    table = reply.q_values
    assert len(table) == len(session.domain.agent_actions)
    chosen = [row for row in table if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["action"] == reply.action and chosen[0]["allowed"]
    allowed = [row["q"] for row in table if row["allowed"]]
    assert chosen[0]["q"] == max(allowed)
    masked = [row for row in table if not row["allowed"]]
    assert masked and all(row["q"] is None for row in masked)  # stated slots are not re-asked
    assert f"request({constraints[0][0]})" in {row["action"] for row in masked}


def test_an_ended_conversation_says_so(world):
    session = session_of(world)
    session.say("2 tickets")
    reply = session.say("forget it, bye")
    while not reply.done:
        reply = session.say("bye")
    assert session.say("hello?").agent.startswith("This conversation is over")


# ---------------------------------------------------------------------- terminal chat
def test_chat_shows_goal_understanding_and_corrections(capsys, monkeypatch):
    lines = "we are 3 people\n/goal\nno, four of us\n/state\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["dialogue", "chat", "rule"]) == 0
    out = capsys.readouterr().out
    assert "Your goal (--seed picks another): [ ]" in out
    assert "understood: 3 people" in out
    assert "changed: 3 people -> 4 people" in out
    assert "the agent knows: number of people 4" in out
    assert out.count("goal: [") >= 3


# ---------------------------------------------------------------------- the server
@pytest.fixture
def server(world, policy):
    domain, built = world
    goals = built.goals("test")
    made = ChatServer(
        ("127.0.0.1", 0),
        lambda seed: ChatSession(domain, built, policy, 40, goals[seed % len(goals)]),
        "DQN policy test",
    )
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    yield made
    made.shutdown()
    made.server_close()


def post(url: str, body, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_api_start_and_two_turns(server):
    status, started = post(server.url + "api/start", {})
    assert status == 200 and started["q_values"] and started["domain"] == "movie"
    assert started["goal"] and started["state"]["matches"] == started["state"]["records"]
    key = started["session"]
    status, first = post(
        server.url + "api/say", {"session": key, "text": "2 tickets for paper comets"}
    )
    assert status == 200 and first["reply"]["understood"] == "2 people, movie paper comets"
    status, second = post(server.url + "api/say", {"session": key, "text": "tomorrow please"})
    assert status == 200 and second["reply"]["agent"]
    assert sum(row["chosen"] for row in second["reply"]["q_values"]) == 1
    assert second["state"]["turn"] == 4


def test_the_page_is_served(server):
    with urllib.request.urlopen(server.url, timeout=10) as response:
        html = response.read().decode()
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "DQN policy test" in html and 'id="qvalues"' in html


def test_oversized_requests_are_refused_unread(server):
    status, body = post(server.url + "api/say", b"x" * (MAX_REQUEST_BYTES + 1))
    assert status == 413 and "too long" in body["error"]
    _, started = post(server.url + "api/start", {})
    status, reply = post(
        server.url + "api/say", {"session": started["session"], "text": "2 tickets " + "a" * 50_000}
    )
    assert status == 200 and "I read only the first" in reply["reply"]["note"]


@pytest.mark.parametrize(
    ("path", "body", "code", "needle"),
    [
        ("api/say", b"{not json", 400, "JSON object"),
        ("api/say", b"[1, 2]", 400, "JSON object"),
        ("api/say", {"session": "nope", "text": "hi"}, 404, "expired"),
        ("api/say", {"session": "x", "text": 42}, 400, "text must be a string"),
        ("api/start", {"seed": "abc"}, 400, "seed must be a whole number"),
        ("api/nothing", {}, 404, "no endpoint"),
    ],
)
def test_bad_requests_get_one_clear_error(server, path, body, code, needle):
    status, reply = post(server.url + path, body)
    assert status == code and needle in reply["error"]


def test_foreign_host_headers_are_refused(server):
    status, reply = post(server.url + "api/start", {}, {"Host": "evil.example"})
    assert status == 403 and "only this computer" in reply["error"]


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.3.4.5")
    assert not is_loopback("192.168.1.5") and not is_loopback("10.0.0.1")
    assert not is_loopback("not an address")


def test_serve_refuses_bad_arguments_in_one_line(capsys, tmp_path):
    assert main(["dialogue", "serve", "rule", "--port", "70000"]) == 1
    assert "--port must be in 0..65535" in capsys.readouterr().err
    (tmp_path / "policy").mkdir()
    assert main(["dialogue", "serve", str(tmp_path)]) == 1
    assert "is an LM dialogue run" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real browser
@pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium)")
def test_the_page_in_headless_chromium(server, world, tmp_path):
    """Load the page, type two turns, see the replies and the Q-value table; screenshot."""
    domain, built = world
    goal = list(built.goals("test")[0].constraints.items())  # the first conversation's goal
    nlg = ChatSession(domain, built, RuleAgent(domain), 40, built.goals("test")[0]).nlg
    second = nlg.user(Act("inform", dict(goal[1:])))
    with Browser() as page:
        page.open(server.url)
        page.wait_for("document.querySelectorAll('#goal li').length > 0")
        page.evaluate("document.getElementById('input').focus()")
        page.type("hi, 2 tickets for paper comets please\n")
        page.wait_for("document.querySelectorAll('.msg.agent').length >= 1")
        page.type(second + "\n")
        page.wait_for("document.querySelectorAll('.msg.agent').length >= 2")
        replies = page.evaluate(
            "[...document.querySelectorAll('.msg.agent')].map(m => m.innerText)"
        )
        mine = page.evaluate("[...document.querySelectorAll('.msg.user')].map(m => m.innerText)")
        rows = page.evaluate(
            "[...document.querySelectorAll('#qtable tbody tr')].map(r => [r.className, r.innerText])"
        )
        png = page.screenshot()
    assert len(replies) == 2 and all("action:" in r for r in replies)
    assert "understood: 2 people, movie paper comets" in mine[0]
    assert "understood: " in mine[1] and "nothing" not in mine[1]
    kinds = [kind for kind, _ in rows]
    assert len(rows) == len(load_domain("movie").agent_actions)
    assert kinds.count("chosen") == 1 and kinds[0] == "chosen"  # the best allowed, first
    assert "masked" in kinds and all("masked" in text for kind, text in rows if kind == "masked")
    chosen_action = rows[0][1].split("\t")[0].removeprefix("▶ ").strip()
    assert chosen_action in replies[1]
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / "webchat.png").write_bytes(png)
