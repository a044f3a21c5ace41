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
