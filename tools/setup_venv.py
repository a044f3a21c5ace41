"""Create `.venv/`, install hrnet-fast with its dev extra, and swap Pillow for pillow-simd.

Why a script and not three pip lines: the swap has to survive later installs. pillow-simd ships
the `PIL` package under the distribution name `Pillow-SIMD`, so any later resolve of torchvision's
`pillow` requirement finds no `pillow` and reinstalls stock Pillow over it. After the swap we
register a metadata-only `pillow` distribution (no files but its own) at pillow-simd's version, so
pip sees the requirement satisfied and leaves PIL alone. Every run re-checks which PIL is active and
repairs the swap if something undid it. Runs with the system Python; standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB_INSTALLER = "hrnet-fast-setup"


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


def pil_owner(site: Path) -> tuple[str, str] | None:
    """(distribution name, version) of the distribution whose RECORD lists PIL/__init__.py."""
    for dist_info in sorted(site.glob("*.dist-info")):
        record = dist_info / "RECORD"
        if not record.is_file():
            continue
        if any(line.split(",", 1)[0] == "PIL/__init__.py" for line in record.read_text().splitlines()):
            meta = dict(_metadata_fields(dist_info / "METADATA"))
            return meta.get("Name", dist_info.name), meta.get("Version", "?")
    return None


def _metadata_fields(path: Path):
    if not path.is_file():
        return
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            break  # the body (description) starts after the first blank line
        if ": " in line:
            key, value = line.split(": ", 1)
            yield key, value


def is_simd(owner: tuple[str, str] | None) -> bool:
    return owner is not None and owner[0].lower().replace("_", "-") == "pillow-simd"


def write_pillow_stub(site: Path, version: str) -> Path:
    """Register a file-less `pillow` distribution so pip treats `pillow` as installed."""
    for old in site.glob("[Pp]illow-*.dist-info"):
        if (old / "INSTALLER").is_file() and (old / "INSTALLER").read_text().strip() == STUB_INSTALLER:
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    dist_info = site / f"pillow-{version}.dist-info"
    dist_info.mkdir()
    files = {
        "METADATA": f"Metadata-Version: 2.1\nName: pillow\nVersion: {version}\n"
                    "Summary: Metadata-only stand-in: PIL is provided by pillow-simd\n",
        "INSTALLER": STUB_INSTALLER + "\n",
    }
    lines = []
    for name, text in files.items():
        (dist_info / name).write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        lines.append(f"{dist_info.name}/{name},sha256={digest},{len(text.encode())}")
    lines.append(f"{dist_info.name}/RECORD,,")
    (dist_info / "RECORD").write_text("\n".join(lines) + "\n")
    return dist_info


def cpu_has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def swap_to_pillow_simd(python: Path, site: Path) -> bool:
    """Replace stock Pillow by pillow-simd (built here); on failure put Pillow back. True on success."""
    env = dict(os.environ)
    env["CC"] = "cc -mavx2" if cpu_has_avx2() else "cc"
    pip(python, "uninstall", "-y", "pillow", "pillow-simd")
    build = pip(python, "install", "--no-cache-dir", "pillow-simd", env=env)
    owner = pil_owner(site)
    if build.returncode != 0 or not is_simd(owner):
        reason = (build.stderr or "").strip().splitlines()[-1:] or ["PIL not provided by pillow-simd"]
        print(f"warning: pillow-simd could not be built ({reason[0][:160]}); using stock Pillow, "
              "decoding will be slower", file=sys.stderr)
        pip(python, "uninstall", "-y", "pillow-simd")
        pip(python, "install", "pillow")
        return False
    write_pillow_stub(site, owner[1])
    return True


def ensure_pil(python: Path, want_simd: bool) -> str:
    site = site_packages(python)
    owner = pil_owner(site)
    if want_simd and not is_simd(owner):
        swap_to_pillow_simd(python, site)
        owner = pil_owner(site)
    elif is_simd(owner) and not any(site.glob("[Pp]illow-*.dist-info")):
        write_pillow_stub(site, owner[1])
    name, version = owner or ("none", "-")
    return f"{name} {version}"


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
    inputs = [ROOT / "pyproject.toml", Path(__file__)]
    stale = (not stamp.exists() or set(args.extras.split(",")) - set(stamp.read_text().split(","))
             or any(p.stat().st_mtime > stamp.stat().st_mtime for p in inputs))
    if stale:
        print(f"setup: installing hrnet-fast[{args.extras}] (editable)")
        result = pip(python, "install", "-e", f"{ROOT}[{args.extras}]", quiet=False)
        if result.returncode != 0:
            print("setup: pip install failed; see the output above", file=sys.stderr)
            return 1
        stamp.write_text(args.extras)
    active = ensure_pil(python, want_simd=not args.no_simd)
    print(f"setup: active PIL = {active}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
