"""The set-up's Pillow → pillow-simd swap survives a later resolve of torchvision's `pillow` requirement.

Tested on the mechanism, offline: a bare venv holds a fake PIL owned by a `pillow-simd`
distribution; pip (run against that venv, no index) must then consider `pillow` satisfied only
once the set-up's stand-in distribution is registered, and the owner check must name the owner.
"""
import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("setup_venv", ROOT / "tools" / "setup_venv.py")
setup_venv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_venv)

TORCHVISION_PILLOW_REQUIREMENT = "pillow!=8.3.*,>=5.3.0"


def fake_distribution(site: Path, name: str, version: str, files: list[str]) -> None:
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{dist.name}/RECORD,,\n")
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text("")


@pytest.fixture
def bare_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = setup_venv.venv_python(env_dir)
    return python, setup_venv.site_packages(python)


def pip_would_install_pillow(python: Path) -> bool:
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
                             "--no-index", "--no-deps", TORCHVISION_PILLOW_REQUIREMENT],
                            capture_output=True, text=True)
    return "already satisfied" not in result.stdout


def test_stand_in_makes_pip_leave_pillow_simd_alone(bare_venv):
    python, site = bare_venv
    fake_distribution(site, "pillow-simd", "12.1.1.post0", ["PIL/__init__.py"])
    assert setup_venv.is_simd(setup_venv.pil_owner(site))
    assert pip_would_install_pillow(python)            # without the stand-in, Pillow would come back
    setup_venv.write_pillow_stub(site, "12.1.1.post0")
    assert not pip_would_install_pillow(python)        # with it, the requirement is satisfied
    assert setup_venv.pil_owner(site) == ("pillow-simd", "12.1.1.post0")


def test_stand_in_is_replaced_not_duplicated(bare_venv):
    _, site = bare_venv
    setup_venv.write_pillow_stub(site, "9.0.0.post1")
    setup_venv.write_pillow_stub(site, "12.1.1.post0")
    assert [d.name for d in site.glob("pillow-*.dist-info")] == ["pillow-12.1.1.post0.dist-info"]


def test_owner_check_detects_stock_pillow_back_on_top(bare_venv):
    _, site = bare_venv
    fake_distribution(site, "pillow", "13.0.0", ["PIL/__init__.py", "PIL/Image.py"])
    owner = setup_venv.pil_owner(site)
    assert owner == ("pillow", "13.0.0") and not setup_venv.is_simd(owner)
