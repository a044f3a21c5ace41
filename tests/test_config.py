"""Recipes resolve to complete configurations; flags override; the lr rule scales with the batch."""
import dataclasses
import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

from hrnet_fast.config import DEFAULTS, RECIPES, inherit, read_settings, resolve
from hrnet_fast.errors import UserError
from hrnet_fast.resolution import Ramp, image_size_at, parse_res
from hrnet_fast.schedule import SCHEDULES, lr_at


def test_reference_recipe_scales_lr_per_128_images():
    cfg = resolve({"recipe": "reference", "batch_size": 64}, world_size=8)
    assert cfg.global_batch == 512 and math.isclose(cfg.base_lr, 0.05 * 512 / 128)
    assert cfg.nesterov and cfg.momentum == 0.9 and cfg.weight_decay == 1e-4


def test_ascend_recipe_uses_lr_per_device_and_batch_256():
    cfg = resolve({"recipe": "ascend"}, world_size=8)
    assert cfg.batch_size == 256 and math.isclose(cfg.base_lr, 0.8)


def test_flags_override_the_recipe():
    cfg = resolve({"recipe": "cosine", "epochs": 3, "lr": 0.2, "label_smoothing": None}, world_size=1)
    assert cfg.epochs == 3 and cfg.base_lr == 0.2 and cfg.label_smoothing == 0.1 and cfg.no_wd_norm_bias


def test_step_schedule_decays_at_milestones():
    cfg = resolve({"recipe": "reference", "lr": 1.0}, world_size=1)
    assert lr_at(cfg, 0) == 1.0 and lr_at(cfg, 29.99) == 1.0
    assert math.isclose(lr_at(cfg, 30), 0.1) and math.isclose(lr_at(cfg, 95), 1e-3)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    cfg = resolve({"recipe": "cosine", "lr": 1.0, "epochs": 10, "warmup_epochs": 2}, world_size=1)
    assert lr_at(cfg, 1.0) == pytest.approx(0.5)
    assert lr_at(cfg, 2.0) == pytest.approx(1.0)
    assert lr_at(cfg, 6.0) == pytest.approx(0.5)
    assert lr_at(cfg, 10.0) == pytest.approx(0.0, abs=1e-12)


def test_linear_schedule_warms_up_then_decays_linearly_to_zero():
    """FFCV's shape: up to the peak at the end of warm-up, a straight line to 0 at the last epoch."""
    cfg = resolve({"schedule": "linear", "lr": 2.0, "epochs": 12, "warmup_epochs": 2}, world_size=1)
    assert lr_at(cfg, 1.0) == pytest.approx(1.0)
    assert lr_at(cfg, 2.0) == pytest.approx(2.0)    # warm-up end: the peak
    assert lr_at(cfg, 7.0) == pytest.approx(1.0)    # halfway from warm-up end to the last epoch
    assert lr_at(cfg, 9.5) == pytest.approx(0.5)
    assert lr_at(cfg, 12.0) == 0.0 and lr_at(cfg, 12.5) == 0.0
    no_warmup = dataclasses.replace(cfg, warmup_epochs=0.0)
    assert lr_at(no_warmup, 0.0) == 2.0 and lr_at(no_warmup, 6.0) == pytest.approx(1.0)


@pytest.mark.parametrize("bad, message", [({"recipe": "sgdr"}, "unknown recipe"),
                                          ({"schedule": "exp"}, "--schedule must be one of step, cosine, linear"),
                                          ({"image_size": 16}, "at least 32"),
                                          ({"epochs": 0}, "at least 1"),
                                          ({"precise_bn": -1}, "--precise-bn"),
                                          ({"ema_decay": 1.0}, "--ema-decay"),
                                          ({"mixup": -0.1}, "--mixup"),
                                          ({"mix_prob": 1.5}, "--mix-prob")])
def test_bad_settings_are_user_errors(bad, message):
    with pytest.raises(UserError, match=message):
        resolve(bad, world_size=1)


def test_resume_inherits_what_the_command_line_leaves_unset():
    saved = resolve({"recipe": "cosine", "batch_size": 4, "workers": 9, "stop_step": 2, "graph": True}, 1).to_json()
    merged, taken = inherit({"recipe": None, "batch_size": None, "epochs": 7, "stop_step": 9}, saved)
    cfg = resolve(merged, 1)
    assert (cfg.recipe, cfg.batch_size, cfg.workers) == ("cosine", 4, 9)  # 9: never the default
    assert cfg.no_wd_norm_bias and cfg.label_smoothing == 0.1
    assert cfg.epochs == 7 and cfg.stop_step == 9 and not cfg.graph  # given flags win; run-local not inherited
    assert taken == {"recipe": "cosine", "batch_size": 4, "workers": 9, "schedule": "cosine", "warmup_epochs": 5,
                     "label_smoothing": 0.1, "no_wd_norm_bias": True}  # what differs from the defaults


def test_resume_with_another_recipe_takes_that_recipes_values():
    saved = resolve({"recipe": "cosine", "workers": 3}, 1).to_json()
    cfg = resolve(inherit({"recipe": "reference"}, saved)[0], 1)
    assert (cfg.recipe, cfg.label_smoothing, cfg.no_wd_norm_bias, cfg.schedule) == ("reference", 0.0, False, "step")
    assert cfg.workers == 3


def test_graph_and_sync_bn_are_refused_together_on_several_processes():
    with pytest.raises(UserError, match="--sync-bn"):
        resolve({"graph": True, "sync_bn": True}, world_size=2)
    assert resolve({"graph": True, "sync_bn": True}, world_size=1).graph  # one process: no SyncBN to clash


def _agree(rank: int, init: str, results: str) -> None:
    import torch.distributed as dist

    from hrnet_fast.device import Device
    from hrnet_fast.distributed import agree_on_least

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    Path(results, f"rank{rank}").write_text(str(agree_on_least(7 - rank * 2, Device("cpu"))))
    dist.destroy_process_group()


def test_ranks_agree_on_the_least_default(tmp_path):
    """Ranks on machines with other CPU counts must still run the same number of workers."""
    import torch.multiprocessing as mp

    mp.spawn(_agree, args=(f"file://{tmp_path / 'init'}", str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["5", "5"]


def test_resolve_is_final_and_takes_what_the_machine_and_data_know():
    cfg = resolve({"recipe": "cosine"}, world_size=2, default_precision="bf16", workers=3, num_classes=10)
    assert (cfg.precision, cfg.workers, cfg.num_classes, cfg.global_batch) == ("bf16", 3, 10, 256)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.precision = "fp32"
    given = resolve({"precision": "o2", "workers": 0, "num_classes": 5}, 1, default_precision="bf16", workers=3,
                    num_classes=10)
    assert (given.precision, given.workers, given.num_classes) == ("o2", 0, 5)  # flags win
    derived = {"world_size", "global_batch", "base_lr"}
    again = resolve({k: v for k, v in cfg.to_json().items() if k not in derived}, world_size=2)
    assert again == cfg  # config.json's settings resolve to themselves: a run can be repeated


def test_config_file_settings_are_checked(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**resolve({}, 1).to_json(), "epochz": 3}))
    with pytest.raises(UserError, match="unknown setting.*epochz"):
        read_settings(path)
    path.write_text("[1, 2]")
    with pytest.raises(UserError, match="not settings"):
        read_settings(path)
    with pytest.raises(UserError, match="cannot read"):
        read_settings(tmp_path / "missing.json")


def test_config_file_is_the_base_and_flags_win(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(resolve({"recipe": "cosine", "batch_size": 4, "stop_step": 3, "out": "a"}, 1).to_json()))
    cfg = resolve(inherit({"epochs": 7, "out": "b"}, read_settings(path))[0], 1)
    assert (cfg.recipe, cfg.batch_size, cfg.label_smoothing, cfg.epochs) == ("cosine", 4, 0.1, 7)
    assert cfg.out == "b" and cfg.stop_step is None  # run-local settings stay this command line's


def test_train_help_is_rendered_from_the_tables():
    from hrnet_fast.models import MODEL_NAMES
    from hrnet_fast.precision import PRECISIONS

    text = " ".join(run_cli("-m", "hrnet_fast", "train", "--help").stdout.split())
    assert all(name in text for name in [*RECIPES, *MODEL_NAMES, *PRECISIONS])
    batches = ", ".join(f"{name} {recipe.values['batch_size']}" for name, recipe in RECIPES.items())
    assert f"Per-device batch [recipe: {batches}]" in text
    assert f"SGD momentum [{DEFAULTS['momentum']:g}]" in text and "--precise-bn" in text and "--config" in text
    assert "ascend 0.1 per device" in text  # the lr rule, from the recipe
    assert all(f"{name}: {schedule.about}" in text for name, schedule in SCHEDULES.items())


def test_setting_help_shows_each_recipes_value_or_the_default():
    from hrnet_fast.commands.options import setting_help

    assert setting_help("Epochs", "epochs") == "Epochs [recipe: reference 100, ascend 100, cosine 100, fast 40]"
    expected = "Label smoothing [recipe: reference 0, ascend 0, cosine 0.1, fast 0.1]"
    assert setting_help("Label smoothing", "label_smoothing") == expected
    assert setting_help("Flips", "hflip") == "Flips [on]" and setting_help("Seed", "seed") == "Seed [0]"
    assert setting_help("Val", "val_image_size") == "Val [recipe: reference unset, ascend unset, cosine unset, fast 224]"


def test_fast_recipe_is_ffcvs_schedule_on_hrnets_lr_rule():
    cfg = resolve({"recipe": "fast", "image_size": 160}, world_size=8)
    assert (cfg.epochs, cfg.schedule, cfg.warmup_epochs, cfg.label_smoothing) == (40, "linear", 2, 0.1)
    assert cfg.no_wd_norm_bias and cfg.val_image_size == 224 and cfg.image_size == 160  # val stays at 224
    assert cfg.base_lr == pytest.approx(0.05 * 8 * 128 / 128)
    assert lr_at(cfg, 2.0) == pytest.approx(cfg.base_lr) and lr_at(cfg, 21.0) == pytest.approx(cfg.base_lr / 2)
    assert lr_at(cfg, 40.0) == 0.0
    ramp = resolve({"recipe": "fast"}, world_size=1)  # without --image-size: FFCV's 160 -> 192 over the run
    assert ramp.res == "160:192" and [image_size_at(ramp, e) for e in (0, 19, 20, 39)] == [160, 160, 192, 192]


def test_res_ramps_linearly_in_steps_of_32_and_holds_outside_its_epochs():
    assert parse_res("160:192", epochs=40) == Ramp(160, 192, 0, 39)  # defaults: the whole run
    ramp = parse_res("128:256:2:6", epochs=10)  # 32 px per epoch from epoch 2 to 6
    assert [ramp.size_at(e) for e in range(10)] == [128, 128, 128, 160, 192, 224, 256, 256, 256, 256]
    # 181.3 and 202.7 px on the line: each to the nearest multiple of 32
    assert [parse_res("160:224:0:3", 4).size_at(e) for e in range(4)] == [160, 192, 192, 224]
    assert parse_res("32:64", 3).size_at(1) == 64          # 48 px: halves round up
    assert parse_res("256:128", 5).size_at(2) == 192       # shrinking works the same way
    assert parse_res("64:96:1:1", 3).size_at(0) == 64 and parse_res("64:96:1:1", 3).size_at(1) == 96  # a step
    cfg = resolve({"res": "32:96", "epochs": 3, "image_size": 224}, world_size=1)
    assert [image_size_at(cfg, e) for e in range(3)] == [32, 64, 96]  # --res wins over --image-size
    assert image_size_at(resolve({"image_size": 96}, world_size=1), 5) == 96  # no --res: one size


@pytest.mark.parametrize("res, message", [("160", "write START:END"), ("a:b", "write START:END"),
                                          ("160:192:1", "write START:END"), ("16:32", "multiples of 32"),
                                          ("160:200", "multiples of 32"), ("160:192:5:2", "FROM_EPOCH <= TO_EPOCH"),
                                          ("160:192:0:10", r"< --epochs \(10\)"), ("160:192:-1:3", "0 <=")])
def test_bad_res_is_a_user_error(res, message):
    with pytest.raises(UserError, match=message):
        resolve({"res": res, "epochs": 10}, world_size=1)


def test_a_recipes_res_yields_to_an_image_size_and_survives_config_json(tmp_path):
    assert resolve({"recipe": "fast", "image_size": 192}, world_size=1).res is None
    path = tmp_path / "config.json"
    path.write_text(json.dumps(resolve({"res": "64:128:1:2", "epochs": 4}, 1).to_json()))
    cfg = resolve(inherit({}, read_settings(path))[0], 1)
    assert cfg.res == "64:128:1:2" and [image_size_at(cfg, e) for e in range(4)] == [64, 64, 128, 128]
