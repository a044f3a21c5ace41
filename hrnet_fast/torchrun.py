"""torchrun as launch/run.sh runs it: a stop signal ends in one line instead of a traceback.

Schedulers stop a job with SIGTERM to the launcher's process group (Slurm's scancel, Kubernetes)
or to its process, users with Ctrl-C. torchrun (`torch.distributed.run`, in this process: run.sh
execs it, so either way the signal arrives here once) sends it on to the ranks, which live in
sessions of their own; they save checkpoints/last.pt and summary.json and exit 0. torchrun waits
for them up to TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds, then raises SignalException: a traceback
and exit status 1 even when every rank saved. Here that ends in one line instead, and exit status
0 when the run saved, 128 + the signal's number when not. Anything else (a rank's failure, bad
flags) is torchrun's own output and status.

"The run saved": rank 0 writes summary.json last, after the final checkpoint. A launcher on
another node of a multi-node run cannot see that file (or sees it late, on a shared file system),
so it names a marker file of its own in the ranks' environment (HRNET_FAST_SAVED_MARKER); each
node's local rank 0 writes it once every rank is past the final checkpoint (`report_saved`).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

SUMMARY = "summary.json"
MARKER_ENV = "HRNET_FAST_SAVED_MARKER"
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
    marker = run_dir / f".saved-{socket.gethostname()}-{os.getpid()}"
    os.environ[MARKER_ENV] = str(marker)  # the ranks inherit it
    try:
        torchrun(torchrun_args)
    except SignalException as stop:
        saved = summary.is_file() or marker.is_file()
        marker.unlink(missing_ok=True)
        if saved:
            report = f"checkpoints saved in {run_dir} ({SUMMARY}); the same command resumes"
            status = 0
        else:
            report = (f"the ranks did not save ({run_dir / SUMMARY} missing): see {run_dir / 'logs'}; "
                      "the same command resumes from the last checkpoint")
            status = 128 + stop.sigval
        print(f"run.sh: stopped by {stop.sigval.name}: {report}", file=sys.stderr, flush=True)
        return status
    marker.unlink(missing_ok=True)
    return 0


def report_saved(local_rank: int) -> None:
    """In a rank, once every rank is past the final checkpoint: local rank 0 tells this node's
    launcher (its marker file, if it named one) that the run saved."""
    path = os.environ.get(MARKER_ENV)
    if path and local_rank == 0:
        try:
            Path(path).write_text("saved\n")
        except OSError:  # the launcher then reports the stop as unsaved: a wrong exit status, not a lost run
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
