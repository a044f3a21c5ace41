"""Create `.venv/`, install hrnet-fast with its dev extra, then put pillow-simd in Pillow's place.

Why a script and not three pip lines: pillow-simd ships the `PIL` package under the distribution
name `Pillow-SIMD`, so pip cannot know that it satisfies torchvision's `pillow` requirement, and any
later resolve of that requirement installs stock Pillow over it. Nothing here hides that from pip:
the order is (1) the project and its requirements, stock Pillow included, (2) Pillow out and a
pillow-simd wheel in (built once for this CPU, kept in `.venv/wheels/` for repairs), (3) a check of
which distribution owns `PIL/__init__.py`, printed on every run. `pip check` therefore lists
torchvision's `pillow` as missing, which is true; if a later install brought Pillow back, the
next `make setup` (run by `make test` and `make demo`) says so and swaps again.
Runs with the system Python; standard library only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_STUB_INSTALLER = "hrnet-fast-setup"  # earlier set-ups registered a file-less `pillow`: removed


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def site_packages(python: Path) -> Path:
    out = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
    return Path(out.strip())


def pip(python: Path, *args: str, env: dict | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(python), "-m", "pip", *args]
    if quiet:
        cmd.insert(3, "-q")
    return subprocess.run(cmd, env=env, text=True, capture_output=quiet)


def pil_owners(site: Path) -> list[tuple[str, str]]:
    """(distribution name, version) of every distribution whose RECORD lists PIL/__init__.py.

    Two at once means one was installed over the other's files: which one's code runs is unknown."""
    owners = []
    for dist_info in sorted(site.glob("*.dist-info")):
        record = dist_info / "RECORD"
        if record.is_file() and any(line.split(",", 1)[0] == "PIL/__init__.py"
                                    for line in record.read_text().splitlines()):
            meta = dict(_metadata_fields(dist_info / "METADATA"))
            owners.append((meta.get("Name", dist_info.name), meta.get("Version", "?")))
    return owners


def _metadata_fields(path: Path):
    if not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            break  # the body (description) starts after the first blank line
        if ": " in line:
            key, value = line.split(": ", 1)
            yield key, value


def is_simd(owners: list[tuple[str, str]]) -> bool:
    return len(owners) == 1 and owners[0][0].lower().replace("_", "-") == "pillow-simd"


def describe(owners: list[tuple[str, str]]) -> str:
    return " + ".join(f"{name} {version}" for name, version in owners) or "none"


def remove_old_stubs(site: Path) -> list[str]:
    """Delete the metadata-only `pillow` distributions earlier set-ups wrote; their names."""
    removed = []
    for dist_info in site.glob("[Pp]illow-*.dist-info"):
        installer = dist_info / "INSTALLER"
        if installer.is_file() and installer.read_text().strip() == OLD_STUB_INSTALLER:
            shutil.rmtree(dist_info)
            removed.append(dist_info.name)
    return removed


def cpu_has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def simd_wheel(python: Path, wheels: Path) -> Path | None:
    """A pillow-simd wheel for this CPU: the one built earlier, else built now (~25 s)."""
    built = sorted(wheels.glob("[Pp]illow_[Ss][Ii][Mm][Dd]-*.whl"))
    if built:
        return built[-1]
    env = {**os.environ, "CC": "cc -mavx2" if cpu_has_avx2() else "cc"}
    result = pip(python, "wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels), "pillow-simd", env=env)
    built = sorted(wheels.glob("[Pp]illow_[Ss][Ii][Mm][Dd]-*.whl"))
    if result.returncode != 0 or not built:
        reason = (result.stderr or "").strip().splitlines()[-1:] or ["no wheel was written"]
        print(f"setup: warning: pillow-simd could not be built ({reason[0][:160]}); keeping stock Pillow, "
              "decoding will be slower", file=sys.stderr)
        return None
    return built[-1]


def install_simd(python: Path, wheel: Path) -> bool:
    """Pillow out, the pillow-simd wheel in; on failure stock Pillow goes back. True on success."""
    pip(python, "uninstall", "-y", "pillow", "pillow-simd")
    if pip(python, "install", "--no-deps", "--no-index", str(wheel)).returncode == 0:
        return True
    print("setup: warning: installing pillow-simd failed; putting stock Pillow back", file=sys.stderr)
    pip(python, "install", "pillow")
    return False


def ensure_pil(python: Path, want_simd: bool, wheels: Path) -> str:
    """Make pillow-simd own PIL when wanted (and possible); return the owner as 'name version'."""
    site = site_packages(python)
    for name in remove_old_stubs(site):
        print(f"setup: removed {name}, a stand-in `pillow` an earlier set-up registered")
    owners = pil_owners(site)
    if want_simd and not is_simd(owners):
        if owners:
            print(f"setup: PIL is provided by {describe(owners)}: replacing it with pillow-simd")
        wheel = simd_wheel(python, wheels)
        if wheel is not None:
            install_simd(python, wheel)
        owners = pil_owners(site)
    return describe(owners)


REGION_SOURCE = ROOT / "hrnet_fast" / "_jpeg.c"


def region_decoder_built() -> bool:
    """Whether the optional C extension (setup.py) sits next to its source, as an editable install
    builds it, and is not older than the source: a rebuild that failed leaves the old one behind."""
    source = REGION_SOURCE.stat().st_mtime
    return any(built.stat().st_mtime >= source for pattern in ("_jpeg.*.so", "_jpeg.*.pyd")
               for built in REGION_SOURCE.parent.glob(pattern))


def libjpeg_headers() -> bool:
    """Whether the C compiler's usual include directory has libjpeg's header (then the extension should build)."""
    return Path("/usr/include/jpeglib.h").exists() or Path("/usr/local/include/jpeglib.h").exists()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".venv"))
    parser.add_argument("--no-simd", action="store_true", help="keep stock Pillow")
    parser.add_argument("--extras", default="dev")
    args = parser.parse_args()

    venv_dir = Path(args.venv)
    python = venv_python(venv_dir)
    if not python.exists():
        print(f"setup: creating {venv_dir}")
        venv.EnvBuilder(with_pip=True).create(venv_dir)
    stamp = venv_dir / ".installed"  # holds the extras installed; older than its inputs: reinstall
    inputs = [ROOT / "pyproject.toml", ROOT / "setup.py", REGION_SOURCE, Path(__file__)]
    stale = (not stamp.exists() or set(args.extras.split(",")) - set(stamp.read_text().split(","))
             or any(p.stat().st_mtime > stamp.stat().st_mtime for p in inputs)
             or (libjpeg_headers() and not region_decoder_built()))
    if stale:
        print(f"setup: installing hrnet-fast[{args.extras}] (editable)")
        result = pip(python, "install", "-e", f"{ROOT}[{args.extras}]", quiet=False)
        if result.returncode != 0:
            print("setup: pip install failed; see the output above", file=sys.stderr)
            return 1
        stamp.write_text(args.extras)
    if region_decoder_built():
        print("setup: region JPEG decode: on (hrnet_fast/_jpeg, libjpeg-turbo)")
    else:
        print("setup: warning: region JPEG decode: off, the loader decodes whole images (slower): install "
              "libjpeg-turbo's headers (Debian/Ubuntu: libjpeg62-turbo-dev or libjpeg-turbo8-dev) and run "
              "`make setup` again", file=sys.stderr)
    active = ensure_pil(python, want_simd=not args.no_simd, wheels=venv_dir / "wheels")
    print(f"setup: active PIL = {active}")
    if active.startswith("pillow-simd"):
        print("setup: note: `pip check` lists torchvision's `pillow` as missing: pillow-simd provides PIL "
              "under its own name; after a pip install that brings Pillow back, run `make setup` again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
