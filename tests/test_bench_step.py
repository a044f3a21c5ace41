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
    assert cpu == ["pack", "loader", "loader_peers", "step", "end_to_end"]
    assert gpu == ["pack", "loader", "loader_peers", "step", "step_graph", "step_compiled", "end_to_end"]
    settings = run_all.Settings(quick=True, device="cuda", accelerator=True, workers=16, out=ROOT)
    assert run_all.COMPARISONS["step_compiled"].flags(settings)[-2:] == ["--compile", "--graph"]
    assert "--graph" in run_all.end_to_end_flags(settings)


class CountingDevice:
    """A device whose steps allocate known amounts, to see which steps the warm-up peak covers."""

    def __init__(self, per_call_mb: list[float]) -> None:
        self.per_call, self.peak = list(per_call_mb), 0.0

    def synchronize(self) -> None:
        pass

    def reset_peak_memory(self) -> None:
        self.peak = 0.0

    def max_memory_allocated(self) -> int:
        return int(self.peak * 2**20)

    def step(self):
        self.peak = max(self.peak, self.per_call.pop(0))


def test_warm_up_peak_leaves_out_the_autotuning_step_and_keeps_the_capture():
    from hrnet_fast.timing import warm_up_steps

    device = CountingDevice([900.0, 40.0, 70.0, 50.0])  # autotune, eager, capture, replay
    seconds, peak_mb = warm_up_steps(device.step, device, 4)
    assert peak_mb == 70.0 and seconds >= 0 and not device.per_call
    single = CountingDevice([900.0])
    assert warm_up_steps(single.step, single, 1)[1] == 0.0


def test_step_vs_timm_runs_both_contenders_on_the_cpu():
    import subprocess
    import sys

    from conftest import ROOT

    args = ["--model", "hrnet_w18_small_v1", "--batch-size", "2", "--image-size", "32", "--steps", "1",
            "--warmup", "2", "--repeats", "1", "--device", "cpu", "--json"]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_vs_timm.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["timm"]["images_per_s"] > 0 and report["ours"]["images_per_s"] > 0
    assert report["ours"]["peak_memory_mb"] > 0 and report["ratio"] > 0


def test_end_to_end_lists_its_shards_again_for_a_long_epoch(tiny_shards, tmp_path):
    """The end-to-end benchmark times ten loader queues; its shards repeat instead of growing."""
    import importlib.util
    import shutil

    from conftest import ROOT

    from hrnet_fast.data import open_source

    spec = importlib.util.spec_from_file_location("end_to_end", ROOT / "benchmarks" / "end_to_end.py")
    end_to_end = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(end_to_end)
    shards = shutil.copytree(tiny_shards, tmp_path / "shards")
    assert end_to_end.repeated_shards(shards, 200) == shards  # enough already
    longer = end_to_end.repeated_shards(shards, 450)
    source, original = open_source(str(longer), "train"), open_source(str(shards), "train")
    assert source.num_samples == 3 * original.num_samples and len(source.urls) == 3 * len(original.urls)
    assert [open(u, "rb").read() for u in source.urls[:8]] == [open(u, "rb").read() for u in original.urls]
    assert end_to_end.repeated_shards(shards, 450) == longer  # cached
