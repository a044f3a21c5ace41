"""The one console channel: information on stdout, warnings on stderr, rank 0 speaks under torchrun."""
import pytest
from conftest import run_cli

SPEAK = ("from hrnet_fast import log; log.configure(); say = log.get('hrnet_fast.demo'); "
         "say.info('FPS 12.5'); say.warning('shard 3 unreadable')")


@pytest.mark.parametrize("rank, world, all_ranks, stdout, stderr", [
    (None, None, None, "FPS 12.5\n", "warning: shard 3 unreadable\n"),          # one plain process
    ("0", "2", None, "FPS 12.5\n", "[rank 0] warning: shard 3 unreadable\n"),
    ("1", "2", None, "", "[rank 1] warning: shard 3 unreadable\n"),            # other ranks only warn
    ("1", "2", "1", "FPS 12.5\n", "[rank 1] warning: shard 3 unreadable\n"),   # HRNET_LOG_ALL_RANKS=1
])
def test_who_speaks_where(rank, world, all_ranks, stdout, stderr):
    env = {k: v for k, v in {"RANK": rank, "WORLD_SIZE": world, "HRNET_LOG_ALL_RANKS": all_ranks}.items() if v}
    result = run_cli("-c", SPEAK, env={"RANK": "0", "WORLD_SIZE": "1", "HRNET_LOG_ALL_RANKS": "0", **env})
    assert (result.stdout, result.stderr) == (stdout, stderr)


def test_configure_twice_prints_once():
    result = run_cli("-c", "from hrnet_fast import log; log.configure(); " + SPEAK)
    assert result.stdout == "FPS 12.5\n"


def test_lines_follow_a_replaced_stdout(capsys):
    """Captured or redirected streams (pytest, notebooks) get the lines: streams are looked up per line."""
    from hrnet_fast import log

    log.configure()
    log.get("hrnet_fast.demo").info("Acc@1 90.00 Acc@5 99.00 images 10")
    assert capsys.readouterr().out == "Acc@1 90.00 Acc@5 99.00 images 10\n"
