"""``make demo`` runs this same code: the whole system end to end must behave as narrated."""

from __future__ import annotations

import ast
import io
import re

from demo.run import run_demo


def test_the_demo_runs_every_step_and_tears_down() -> None:
    """Split near 90/10, private path refused, header canary to green, retries masking a flaky
    backend, a progressive shift to green watched by the probe (several steps seen, then
    100 %), finish publishing nothing, operator views shown."""
    out = io.StringIO()
    code = run_demo(out)
    text = out.getvalue()
    assert code == 0, text
    assert [int(n) for n in re.findall(r"^\[(\d+)/11\]", text, re.M)] == list(range(1, 12))
    assert "with x-canary: 1    -> {'tuna-green': 100}" in text
    peer = re.search(r"\(coral's peer port\) x 100   -> (\{.*\})", text)
    assert peer is not None and set(ast.literal_eval(peer.group(1))) <= {"tuna-blue", "tuna-green"}
    assert re.search(r"GET http://tuna\.fish\.service\.local/tuna -> 200 tuna-(blue|green)", text)
    assert "private path /tuna/admin from reef: HTTP 404" in text
    retried = re.search(r"/flaky \(RETRIES=2 on=5xx\)\s+-> (\d+) x 200", text)
    assert retried is not None and int(retried.group(1)) >= 198
    assert "private path /tuna/admin through the gateway: HTTP 404" in text
    probed = re.findall(r"^\s+[\d.]+s\s+([\d.]+)%\s+(\w+), step (\d)/4: green (\d+)%", text, re.M)
    assert {int(step) for _, _, step, _ in probed} >= {1, 2, 3, 4}, probed
    assert probed[-1][1:] == ("completed", "4", "100") and float(probed[-1][0]) == 100.0
    assert re.search(r"green serves all of /tuna [\d.]+s after the shift started", text)
    assert "the next cycles published nothing" in text
    assert re.search(r"tuna-green\s+100%\s+100\.0%", text)
    assert "$ nightjar diff" in text and '+                cluster: "tuna/green"' in text
    assert "everything is torn down" in text
