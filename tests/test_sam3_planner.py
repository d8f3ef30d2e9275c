"""The planner over SAM 3 end to end, against the scripted OpenAI-compatible endpoint (`pytest -k sam3`): `find`
lists SAM 3's instances (already tracked), `select` is verified over the whole video, the planner changes its
choice after seeing it, and `confirm` ends with that instance's masks: any tool-calling MLLM + SAM 3 as an agent."""

from __future__ import annotations

import numpy as np

from test_planner import ScriptedPlanner, tool
from test_sam3 import PHRASE, sam3_models, sam3_present, tiny_video  # noqa: F401  (fixtures)

from agent.assistant.session import Session
from agent.pipeline import Pipeline, Request


def test_sam3_planner_finds_selects_verifies_and_changes_its_choice(sam3_present):  # noqa: F811
    backend, _ = sam3_present
    direct = Pipeline(backend, tiny_video(), progress=False).run(Request(f"every {PHRASE}", mode="direct"))
    instances = sorted(direct.objects)
    assert len(instances) >= 2
    planner = ScriptedPlanner(tool("find", phrase=PHRASE), tool("select", ids=[instances[0]], reason="the first"),
                              tool("select", ids=[instances[-1]], reason="the last one, seen over the whole video"), tool("confirm"))
    session = Session(backend, tiny_video(), progress=False, planner=planner.config(candidates=8))
    reply = session.ask("the red square that appears last")
    assert reply.mode == "planner" and list(reply.objects) == [1]
    for t in range(len(session.video)):
        assert np.array_equal(reply.masks(t)[1], direct.masks(t)[instances[-1]]), t
    # the planner saw every instance as a numbered candidate, and only those numbers are allowed afterwards
    found = next(s for s in reply.trace if s.kind == "tool" and s.detail["tool"] == "find")
    assert [int(line.split()[0][1:]) for line in found.detail["result"].splitlines()[1:]] == instances
    select = {t["function"]["name"]: t for t in planner.requests[1]["tools"]}["select"]
    assert select["function"]["parameters"]["properties"]["ids"]["items"]["enum"] == instances
    shown = [s for s in reply.trace if s.kind == "verify"]
    assert [s.detail["ids"] for s in shown] == [[instances[0]], [instances[-1]], [instances[-1]]]
    assert shown[0].detail["frames"] == [0, 3, 6, 9] and len(shown[0].detail["images"]) == 1
