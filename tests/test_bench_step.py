"""`hrnet-fast bench step`: a real train step on synthetic input, reported as one JSON line."""
import json

from click.testing import CliRunner

from hrnet_fast.commands.bench_step import bench_step


def test_bench_step_reports_images_per_second_and_trains():
    args = ["--model", "hrnet_w18_small_v1", "--batch-size", "2", "--image-size", "32", "--steps", "2",
            "--warmup", "1", "--device", "cpu", "--json"]
    result = CliRunner().invoke(bench_step, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    report = json.loads(lines[-1])
    assert report["images_per_s"] > 0 and report["steps"] == 2 and report["precision"] == "fp32"
    assert report["final_loss"] > 0 and "img/s" in lines[-2]


def test_run_all_picks_the_comparisons_the_device_can_run(monkeypatch):
    import importlib.util
    import sys

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all", run_all)  # dataclasses look their module up there
    spec.loader.exec_module(run_all)
    cpu, gpu = run_all.default_comparisons(False), run_all.default_comparisons(True)
    assert cpu == ["pack", "loader", "step", "end_to_end"]
    assert gpu == ["pack", "loader", "step", "step_graph", "step_compiled", "end_to_end"]
    settings = run_all.Settings(quick=True, device="cuda", accelerator=True, workers=16, out=ROOT)
    assert run_all.COMPARISONS["step_compiled"].flags(settings)[-2:] == ["--compile", "--graph"]
    assert "--graph" in run_all.end_to_end_flags(settings)
