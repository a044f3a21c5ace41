"""Choices and help texts shared by several commands."""
DEVICE_CHOICES = ["auto", "npu", "cuda", "cpu"]
PRECISION_CHOICES = ["fp32", "amp", "bf16", "o2"]
ALIGN_CHOICES = ["8", "16", "off", "auto"]
ALIGN_HELP = ("Run with branch widths zero-padded to a multiple of 8 / 16 (same math, faster on tensor "
              "cores); checkpoints keep official shapes [auto: 8 on CUDA, 16 on NPU, off on CPU].")
MODEL_HELP = ("hrnet_w18_small_v1, hrnet_w18_small_v2, hrnet_w18, hrnet_w30, hrnet_w32, hrnet_w40, "
              "hrnet_w44, hrnet_w48, hrnet_w64 (see `hrnet-fast models`).")
