"""Imports go one way: `pack` may use hrnet_fast's leaf modules, `hrnet_fast` never imports `pack`.

The shard format lives in `hrnet_fast.shardformat`, which both sides import; were `hrnet_fast`
to reach into `pack` again, the trainer would need the packer installed and the two could drift.
Checked twice: by importing every module in a fresh interpreter, and by reading the source,
which also sees imports inside functions (the CLI commands import lazily).
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hrnet_fast"
SHARD_FORMAT = PACKAGE / "shardformat"
LEAVES = {"hrnet_fast.errors", "hrnet_fast.atomic"}  # what the shard format may build on

IMPORT_ALL = """
import pkgutil, sys
import hrnet_fast
for module in pkgutil.walk_packages(hrnet_fast.__path__, "hrnet_fast."):
    if not module.name.endswith(".__main__"):  # running the CLI is not importing it
        __import__(module.name)
print(sorted(name for name in sys.modules if name == "pack" or name.startswith("pack.")))
"""


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at any depth in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_importing_all_of_hrnet_fast_loads_no_pack_module():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_no_hrnet_fast_source_imports_pack():
    offenders = {str(path.relative_to(ROOT)): sorted(names) for path in PACKAGE.rglob("*.py")
                 if (names := {n for n in imported_modules(path) if n.split(".")[0] == "pack"})}
    assert offenders == {}


def test_the_shard_format_builds_only_on_leaf_modules():
    offenders = {str(path.relative_to(ROOT)): sorted(names) for path in SHARD_FORMAT.rglob("*.py")
                 if (names := {n for n in imported_modules(path)
                               if n.split(".")[0] in ("hrnet_fast", "pack") and n not in LEAVES
                               and not n.startswith("hrnet_fast.shardformat")})}
    assert offenders == {}
