"""What a run writes into its directory: metrics.jsonl lines, config.json, summary.json, TensorBoard."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hrnet_fast import log as logs
from hrnet_fast.atomic import write_json_atomic

log = logs.get(__name__)


class RunLog:
    """Rank 0 writes; other ranks' calls are no-ops, so the loop never branches on rank."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._tb: Any | None = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
                except ImportError:
                    log.warning("tensorboard is not installed (pip install tensorboard): --tensorboard ignored")

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """RUN_DIR/NAME (config.json, summary.json), replaced atomically."""
        if self.enabled:
            write_json_atomic(self.run_dir / name, data)

    def metrics(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = record.get("step", 0)
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
