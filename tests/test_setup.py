"""The set-up puts pillow-simd in Pillow's place in the open, and repairs it when Pillow comes back.

Tested on the mechanism, offline: a bare venv, fake distributions that own a `PIL/__init__.py`,
and a hand-made `pillow-simd` wheel that pip installs from a local folder.
"""
import base64
import hashlib
import importlib.util
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("setup_venv", ROOT / "tools" / "setup_venv.py")
setup_venv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_venv)


def fake_distribution(site: Path, name: str, version: str, files: list[str], installer: str = "pip") -> None:
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "INSTALLER").write_text(f"{installer}\n")
    own = [f"{dist.name}/{name}" for name in ("METADATA", "INSTALLER", "RECORD")]
    (dist / "RECORD").write_text("".join(f"{f},,\n" for f in files + own))
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text(f"# {name}\n")


def fake_simd_wheel(folder: Path, version: str = "12.1.1.post0") -> Path:
    """A minimal valid wheel named like pillow-simd's, holding PIL/__init__.py."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"Pillow_SIMD-{version}.dist-info"
    files = {"PIL/__init__.py": "# pillow-simd\n",
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: Pillow-SIMD\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"Pillow_SIMD-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def bare_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = setup_venv.venv_python(env_dir)
    return python, setup_venv.site_packages(python)


def pip_for(python: Path):
    """setup_venv.pip for a venv without pip of its own: this interpreter's pip, pointed at it."""
    def run(_python, *args, env=None, quiet=True):
        return subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *args],
                              env=env, text=True, capture_output=True)
    return run


def test_stock_pillow_is_replaced_by_the_kept_simd_wheel(bare_venv, tmp_path, monkeypatch):
    python, site = bare_venv
    monkeypatch.setattr(setup_venv, "pip", pip_for(python))
    fake_distribution(site, "pillow", "13.0.0", ["PIL/__init__.py", "PIL/Image.py"])
    wheels = tmp_path / "wheels"
    fake_simd_wheel(wheels)
    active = setup_venv.ensure_pil(python, want_simd=True, wheels=wheels)
    assert active == "Pillow-SIMD 12.1.1.post0"
    assert setup_venv.is_simd(setup_venv.pil_owners(site))
    assert (site / "PIL/__init__.py").read_text() == "# pillow-simd\n"
    assert not list(site.glob("pillow-*.dist-info"))  # stock Pillow is gone, nothing stands in for it


def test_pillow_installed_over_pillow_simd_is_not_taken_for_simd(bare_venv):
    """pip writes Pillow's files over pillow-simd's: both claim PIL, which one runs is unknown."""
    _, site = bare_venv
    fake_distribution(site, "Pillow-SIMD", "12.1.1.post0", ["PIL/__init__.py"])
    assert setup_venv.is_simd(setup_venv.pil_owners(site))
    fake_distribution(site, "pillow", "13.0.0", ["PIL/__init__.py"])
    owners = setup_venv.pil_owners(site)
    assert len(owners) == 2 and not setup_venv.is_simd(owners)
    assert setup_venv.describe(owners) == "Pillow-SIMD 12.1.1.post0 + pillow 13.0.0"


def test_stand_ins_of_earlier_set_ups_are_removed(bare_venv):
    _, site = bare_venv
    fake_distribution(site, "pillow", "12.1.1.post0", [], installer=setup_venv.OLD_STUB_INSTALLER)
    fake_distribution(site, "pillow", "13.0.0", ["PIL/__init__.py"])  # a real one stays
    assert setup_venv.remove_old_stubs(site) == ["pillow-12.1.1.post0.dist-info"]
    assert [d.name for d in site.glob("pillow-*.dist-info")] == ["pillow-13.0.0.dist-info"]
