"""`make demo`'s pipeline end to end on real data: digits → pack → launch/run.sh → eval, Acc@1 ≥ 90."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_demo_pipeline_reaches_90_percent_on_held_out_digits(tmp_path):
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "EPOCHS": "6",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh")], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"Acc@1 ([\d.]+) Acc@5 ([\d.]+) images (\d+)", last)
    assert match, last
    acc1, images = float(match.group(1)), int(match.group(3))
    assert images == 355          # every held-out digit, counted once
    assert acc1 >= 90.0, result.stdout[-3000:]
