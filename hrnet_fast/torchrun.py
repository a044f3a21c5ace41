"""torchrun as launch/run.sh runs it: a stop signal ends in one line instead of a traceback.

Schedulers stop a job with SIGTERM to the launcher's process group (Slurm's scancel, Kubernetes)
or to its process, users with Ctrl-C. torchrun (`torch.distributed.run`, in this process: run.sh
execs it, so either way the signal arrives here once) sends it on to the ranks, which live in
sessions of their own; they save checkpoints/last.pt and summary.json and exit 0. torchrun waits
for them up to TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds, then raises SignalException: a traceback
and exit status 1 even when every rank saved. Here that ends in one line instead, and exit status
0 when the run saved (summary.json, which the trainer writes last, exists), 128 + the signal's
number when not. Anything else (a rank's failure, bad flags) is torchrun's own output and status.
"""
from __future__ import annotations

import sys
from pathlib import Path

SUMMARY = "summary.json"
USAGE = "usage: python -m hrnet_fast.torchrun RUN_DIR [TORCHRUN ARGS...]  (launch/run.sh runs it)"


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    run_dir, torchrun_args = Path(argv[0]), argv[1:]
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.run import main as torchrun

    summary = run_dir / SUMMARY
    summary.unlink(missing_ok=True)  # an earlier attempt's must not vouch for this one
    try:
        torchrun(torchrun_args)
    except SignalException as stop:
        if summary.is_file():
            report = f"checkpoints saved in {run_dir} ({SUMMARY}); the same command resumes"
            status = 0
        else:
            report = (f"the ranks did not save ({run_dir / SUMMARY} missing): see {run_dir / 'logs'}; "
                      "the same command resumes from the last checkpoint")
            status = 128 + stop.sigval
        print(f"run.sh: stopped by {stop.sigval.name}: {report}", file=sys.stderr, flush=True)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
