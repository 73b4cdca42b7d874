"""Screenshot of `dqnlm dialogue serve` for the docs: a real headless Chromium talks to a
trained DQN policy toward the page's goal, answering each question the agent asks in
casual words, and saves the page.

    python benchmarks/webchat_screenshot.py RUN_DIR --out docs/figures/webchat.png
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import Browser  # noqa: E402

from dqnlm.dialogue import RuleAgent, build_world, load_domain  # noqa: E402
from dqnlm.dialogue.acts import DONT_CARE  # noqa: E402
from dqnlm.dialogue.chat import ChatSession, value_text  # noqa: E402
from dqnlm.dialogue.dqn import load_policy  # noqa: E402
from dqnlm.dialogue.webchat import ChatServer  # noqa: E402


def casual(domain, slot: str, value: str) -> str:
    if value == DONT_CARE:
        return f"any {domain.slot(slot).label} is fine"
    if slot == "numberofpeople":
        return f"there'll be {value} of us"
    return value_text(domain, slot, value).removeprefix(domain.slot(slot).label + " ") + " please"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a trained `dqnlm dialogue train` run, or `rule`")
    parser.add_argument("--out", default="docs/figures/webchat.png")
    parser.add_argument("--turns", type=int, default=3, help="user turns before the shot")
    parser.add_argument("--seed", type=int, default=0, help="the goal shown")
    parser.add_argument("--height", type=int, default=1500, help="window height in pixels")
    args = parser.parse_args()
    if args.run_dir == "rule":
        domain = load_domain("movie")
        agent, title = RuleAgent(domain), "rule agent"
    else:
        config, agent = load_policy(args.run_dir)
        domain, title = load_domain(config.domain), f"DQN policy {Path(args.run_dir).name}"
    world = build_world(domain)
    goal = world.goals("test")[args.seed % len(world.goals("test"))]
    server = ChatServer(
        ("127.0.0.1", 0), lambda _: ChatSession(domain, world, agent, 40, goal), title
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    unsaid = list(goal.constraints.items())
    asks = [s for s in goal.requests if s != domain.ticket_slot]
    opening = "hi! " + ", ".join(casual(domain, *unsaid.pop(0)) for _ in range(min(2, len(unsaid))))
    with Browser(width=1400, height=args.height) as page:
        page.open(server.url)
        page.wait_for("document.querySelectorAll('#goal li').length > 0")
        page.evaluate("document.getElementById('input').focus()")
        said = [opening]
        page.type(opening + "\n")
        for turn in range(1, args.turns):
            page.wait_for(f"document.querySelectorAll('.msg.agent').length >= {turn}")
            action = page.evaluate(
                "[...document.querySelectorAll('.msg.agent')].pop().innerText.split('action: ')[1]"
            )
            slot = action[action.index("(") + 1 : -1] if action.startswith("request(") else ""
            if slot:  # answer the question: the goal's value, or indifference
                text = casual(domain, slot, goal.constraints.get(slot, DONT_CARE))
                unsaid = [(s, v) for s, v in unsaid if s != slot]
            elif unsaid:
                text = casual(domain, *unsaid.pop(0))
            elif asks:
                text = f"and what's the {domain.slot(asks.pop(0)).label}?"
            else:
                text = "great, book it please"
            said.append(text)
            page.type(text + "\n")
        page.wait_for(f"document.querySelectorAll('.msg.agent').length >= {args.turns}")
        Path(args.out).write_bytes(page.screenshot())
    server.shutdown()
    print(f"said: {said}\nwrote {args.out}")


if __name__ == "__main__":
    main()
