"""benchmarks/loader_vs_peers.py: flags, the skip-with-reason path without a peers venv, the table and
its ratio to the faster peer, and run_all's rows from its JSON — no peer installed, no photo decoded."""
import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def load(monkeypatch, name, path):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ on it; undone after
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def peers(monkeypatch):
    return load(monkeypatch, "loader_vs_peers", ROOT / "benchmarks" / "loader_vs_peers.py")


def measured(best, version="1"):
    return {"images_per_s": [best - 10, best], "best": best, "version": version}


def test_flags(peers):
    assert peers.parse_workers("1,2") == [1, 2] and peers.parse_workers("2,1,2") == [2, 1]
    for bad in ("0", "a,b", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            peers.parse_workers(bad)
    args = peers.parse_args([])
    assert args.workers == [1, 2] and args.rounds == 2 and args.images == 2000 and args.batch == 256
    assert args.sets == ["originals", "resize256"] and args.work.name == "loader_vs_peers-2000"
    assert peers.parse_args(["--only", "hrnet_fast,dali", "--sets", "resize256"]).only == ["hrnet_fast", "dali"]
    for bad in (["--workers", "x"], ["--sets", "tiny"], ["--only", "timm"], ["--rounds", "0"],
                ["--images", "300", "--workers", "1,2"]):  # 300 photos: no batch of 256 for each of 2 workers
        with pytest.raises(SystemExit):
            peers.parse_args(bad)


def test_run_peer_flags_and_round_sizes(monkeypatch):
    run_peer = load(monkeypatch, "run_peer", ROOT / "benchmarks" / "peers" / "run_peer.py")
    assert run_peer.parse_args(["--peer", "dali", "--shards", "s"]).images_per_round == 4096
    with pytest.raises(SystemExit):
        run_peer.parse_args(["--peer", "ffcv", "--folder", "f"])  # FFCV also needs --work for its .beton
    assert run_peer.parse_args(["--peer", "ffcv", "--check"]).check
    assert run_peer.batches_per_round(4096, 256) == 16 and run_peer.batches_per_round(100, 256) == 1
    assert run_peer.default_warmup(1) == 2 and run_peer.default_warmup(3) == 6


def test_peer_status_says_why_a_peer_is_missing(peers, tmp_path):
    reasons, installed = peers.peer_status(tmp_path / "none")
    assert set(reasons) == {"ffcv", "dali", "torchvision"} and installed == {}
    assert all(reason.startswith("no ") for reason in reasons.values())
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    assert "unreadable" in peers.peer_status(venv)[0]["dali"]
    (venv / "peers.json").write_text(json.dumps({
        "ffcv": {"ok": False, "reason": "pip install ffcv==1.0.2: Could not find required package: opencv4."},
        "dali": {"ok": True, "version": "2.4.0"}}))
    reasons, installed = peers.peer_status(venv)
    assert reasons == {"ffcv": "pip install ffcv==1.0.2: Could not find required package: opencv4.",
                       "torchvision": f"torchvision not in {venv / 'peers.json'}"}
    assert installed["dali"]["version"] == "2.4.0"


def test_ratio_is_to_the_faster_of_ffcv_and_dali_not_torchvision(peers):
    cells = {"hrnet_fast": measured(620.0), "ffcv": measured(576.0), "dali": measured(490.0),
             "torchvision_simd": measured(900.0)}
    key, ratio = peers.best_peer(cells)
    assert key == "ffcv" and ratio == pytest.approx(620 / 576)
    assert peers.best_peer({"hrnet_fast": measured(620.0), "ffcv": {"skipped": "x"}, "dali": {"failed": "y"}}) \
        == (None, None)
    assert peers.best_peer({"ffcv": measured(1.0)}) == (None, None)  # ours missing


def test_missing_peers_venv_skips_with_the_reason_and_still_tables(peers, monkeypatch, capsys, tmp_path):
    ran = []
    monkeypatch.setattr(peers, "prepare", lambda args: {name: (tmp_path, tmp_path) for name in args.sets})
    monkeypatch.setattr(peers, "run_ours", lambda shards, workers, args: measured(600.0 * workers, "0.1.0"))

    def fake_peer(python, peer, folder, shards, work, workers, args):
        ran.append((Path(python), peer))
        return measured(500.0 * workers, "0.29.1")

    monkeypatch.setattr(peers, "run_peer", fake_peer)
    results = peers.main(["--workers", "1,2", "--rounds", "1", "--sets", "originals", "--out", str(tmp_path),
                          "--peers-venv", str(tmp_path / "missing"), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"ffcv: skipped: no {tmp_path / 'missing'} (run benchmarks/peers/setup.sh)" in lines
    assert json.loads(lines[-1]) == json.loads(json.dumps(results))
    assert ran == [(Path(sys.executable), "torchvision")] * 2  # only pillow-simd's torchvision: .venv's python
    assert [row["ratio"] for row in results["rows"]] == [None, None]
    assert results["rows"][0]["cells"]["dali"] == {"skipped": f"no {tmp_path / 'missing'}"}
    header = next(line for line in lines if line.startswith("| photos |"))
    assert header.endswith("| torchvision+pillow-simd | torchvision (stock Pillow) | hrnet-fast / best peer |")
    assert "| originals | 2 | 1200 | skipped | skipped | 1000 | skipped | – |" in lines
    assert any(line.startswith("- DALI ? CPU: skipped: no ") for line in lines)
    assert (tmp_path / "loader_vs_peers.md").read_text().strip() in "\n".join(lines)


def test_table_names_versions_and_failures(peers):
    row = {"set": "resize256", "label": "short side 256", "workers": 1, "best_peer": "ffcv", "ratio": 872 / 1216,
           "cells": {"hrnet_fast": measured(872.0), "ffcv": measured(1216.0, "1.0.2"), "dali": measured(775.0, "2.4.0"),
                     "torchvision_simd": {"failed": "exit 1: boom"}, "torchvision": measured(567.0)}}
    results = {"machine": {"date": "d", "cpu": "EPYC", "cores": 2, "load_average_start": 0.5}, "rounds": 2,
               "images": 2000, "batch": 256, "images_per_round": 4096, "command": "c", "installed": {},
               "columns": [c.key for c in peers.COLUMNS], "skipped": {}, "rows": [row]}
    table = peers.markdown(results)
    assert "| FFCV 1.0.2 | DALI 2.4.0 CPU |" in table
    assert "| short side 256 | 1 | 872 | 1216 | 775 | failed | 567 | 0.72× (FFCV 1.0.2) |" in table
    assert "- torchvision+pillow-simd, short side 256, 1 worker: failed: exit 1: boom" in table


def test_a_peer_that_cannot_import_fails_with_its_error(peers, tmp_path):
    """run_peer.py under .venv's python, which has no DALI: one line saying so, not a traceback."""
    args = peers.parse_args(["--workers", "1", "--rounds", "1", "--timeout", "120"])
    cell = peers.run_peer(Path(sys.executable), "dali", tmp_path, tmp_path, tmp_path, 1, args)
    assert cell["failed"].startswith("exit 1: ") and "nvidia" in cell["failed"]


def test_run_all_rows_and_flags(monkeypatch):
    run_all = load(monkeypatch, "run_all", ROOT / "benchmarks" / "run_all.py")
    settings = run_all.Settings(quick=False, device="cpu", accelerator=False, workers=2, out=ROOT)
    assert run_all.peers_flags(settings)[:2] == ["--workers", "1,2"]
    quick = run_all.peers_flags(run_all.Settings(quick=True, device="cpu", accelerator=False, workers=1, out=ROOT))
    assert quick[:2] == ["--workers", "1"] and "--rounds" in quick
    result = {"target": 1.3, "batch": 256, "images": 2000, "rounds": 2, "rows": [
        {"label": "originals", "workers": 2, "best_peer": "ffcv", "ratio": 1252 / 1163,
         "cells": {"hrnet_fast": measured(1252.0), "ffcv": measured(1163.0, "1.0.2"), "dali": measured(928.0),
                   "torchvision_simd": measured(1004.0)}},
        {"label": "short side 256", "workers": 1, "best_peer": None, "ratio": None,
         "cells": {"hrnet_fast": measured(872.0), "ffcv": {"skipped": "no venv"}, "dali": {"failed": "exit 1"}}}]}
    met, missing = run_all.peers_rows(result)
    assert met["ratio"] == pytest.approx(1252 / 1163) and not met["met"] and met["target"] == 1.3
    assert "2 workers" in met["label"] and "torchvision_simd 1004" in met["note"]
    assert math.isnan(missing["ratio"]) and not missing["met"]
    assert "ffcv: no venv; dali: exit 1" in missing["note"] and "setup.sh" in missing["note"]
    report = {"machine": {"date": "d", "cpu": "c", "cores": 2, "accelerator": None, "device": "cpu", "torch": "t",
                          "python": "p", "load_average_start": 0}, "command": "c", "seconds": 60,
              "comparisons": {"loader_peers": {"error": None, "rows": [met, missing]}}}
    assert "| 872.0 | 0.0 | – | ≥ 1.3× | no |" in run_all.markdown(report)
