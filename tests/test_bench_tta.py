"""benchmarks/time_to_accuracy.py: its table and JSON structure on a minimal run (not its accuracy)."""
import importlib.util
import json
import sys

from conftest import ROOT


def load_benchmark(monkeypatch):
    spec = importlib.util.spec_from_file_location("time_to_accuracy", ROOT / "benchmarks" / "time_to_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "time_to_accuracy", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_one_config_one_epoch_prints_a_table_and_json(monkeypatch, capsys):
    tta = load_benchmark(monkeypatch)
    results = tta.main(["--sets", "digits", "--configs", "fast+ema", "--epochs", "1", "--per-class-limit", "6",
                        "--batch-size", "8", "--workers", "1", "--target", "0", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == json.loads(json.dumps(results))
    assert "| config | epochs to target | seconds to target | best Acc@1 |" in lines
    run = results["sets"]["digits"]["runs"][0]
    assert run["config"] == "fast+ema" and len(run["accs"]) == len(run["seconds"]) == 1
    assert run["epochs_to_target"] == 1 and run["seconds_to_target"] == run["seconds"][0] > 0  # target 0: epoch 1
    assert any(line.startswith("| fast+ema | 1 |") for line in lines)


def test_flags_follow_recipe_and_set(monkeypatch):
    tta = load_benchmark(monkeypatch)
    hard = tta.train_flags("fast+mix", tta.SETS["hard"], 4, 32, 2, 0)
    assert hard[hard.index("--res") + 1] == "32:64" and "--mixup" in hard and "--cutmix" in hard
    assert hard[hard.index("--warmup-epochs") + 1] == "1.0"
    reference = tta.train_flags("reference", tta.SETS["digits"], 4, 32, 2, 0)
    assert "--res" not in reference and "--warmup-epochs" not in reference and "--ema-decay" not in reference
    assert tta.parse_targets("digits=90", ["digits", "hard"]) == {"digits": 90.0, "hard": 60.0}
    assert tta.parse_targets("50", ["digits", "hard"]) == {"digits": 50.0, "hard": 50.0}


def test_run_counts_epochs_and_seconds_to_the_first_epoch_at_target(monkeypatch):
    tta = load_benchmark(monkeypatch)
    run = tta.Run("reference", accs=[40.0, 96.0, 94.0, 97.0], seconds=[10.0, 20.0, 30.0, 40.0], wall_s=50.0)
    assert run.epochs_to(95.0) == 2 and run.seconds_to(95.0) == 20.0 and run.best() == 97.0
    assert run.epochs_to(99.0) is None and "not reached" in tta.markdown("digits", 99.0, 4, [run])


def test_epoch_accuracy_is_the_better_of_raw_and_ema(tmp_path, monkeypatch):
    tta = load_benchmark(monkeypatch)
    lines = [{"kind": "train", "loss": 1.0}, {"kind": "epoch", "epoch": 0, "epoch_seconds": 2.0, "acc1": 50.0},
             {"kind": "epoch", "epoch": 1, "epoch_seconds": 3.0, "acc1": 60.0, "ema_acc1": 70.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert tta.read_epochs(tmp_path / "metrics.jsonl") == ([50.0, 70.0], [2.0, 5.0])


def test_seeds_aggregate_to_the_median_a_miss_counting_as_beyond_the_budget(monkeypatch):
    tta = load_benchmark(monkeypatch)
    assert tta.median([5, 7]) == 6 and tta.median([5, None]) is None and tta.median([5, None, 6]) == 6
    assert tta.median([None, None, 4]) is None and tta.median([3]) == 3
    runs = [tta.Run("fast", [50.0, 81.0, 90.0], [5.0, 10.0, 15.0], 20.0, seed=1),
            tta.Run("fast", [81.0, 85.0, 86.0], [6.0, 12.0, 18.0], 20.0, seed=0),
            tta.Run("reference", [50.0, 60.0, 70.0], [7.0, 14.0, 21.0], 25.0, seed=0),
            tta.Run("reference", [50.0, 60.0, 82.0], [7.0, 14.0, 21.0], 25.0, seed=1)]
    fast = tta.summarize(tta.by_config(runs)["fast"], 80.0)
    assert fast["seeds"] == [0, 1] and fast["epochs_to_target"] == [1, 2] and fast["median_epochs_to_target"] == 1.5
    assert fast["seconds_to_target"] == [6.0, 10.0] and fast["median_seconds_to_target"] == 8.0
    assert fast["best_acc1"] == [86.0, 90.0] and fast["median_best_acc1"] == 88.0
    reference = tta.summarize(tta.by_config(runs)["reference"], 80.0)
    assert reference["epochs_to_target"] == [None, 3] and reference["median_epochs_to_target"] is None
    table = tta.markdown("hard", 80.0, 3, runs).splitlines()
    assert "| fast | 1.5 (1 / 2) | 8.0 (6.0 / 10.0) | 88.00 (86.00 / 90.00) |" in table
    assert "| reference | not reached (– / 3) | not reached (– / 21.0) | 76.00 (70.00 / 82.00) |" in table
    one = tta.markdown("hard", 80.0, 3, runs[1:2]).splitlines()  # one seed: plain values, no brackets
    assert "| fast | 1 | 6.0 | 86.00 |" in one


def test_seeds_and_per_set_budgets_parse(monkeypatch):
    tta = load_benchmark(monkeypatch)
    args = tta.parse_args(["--seeds", "0,1"])
    assert args.seeds == [0, 1] and args.epochs is None and len(args.configs) == 9
    assert tta.parse_args(["--seed", "3"]).seeds == [3]
    quick = tta.parse_args(["--quick"])
    assert quick.epochs == 3 and quick.per_class_limit == 40 and quick.seeds == [0]
