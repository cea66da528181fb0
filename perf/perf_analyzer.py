"""Locate a runnable perf_analyzer (the C++ client shipped in the tritonclient 2.51.0 wheel).

Order: `$CASCADE_PERF_ANALYZER`, then a binary cached under `<cache>/perf_analyzer/`, else
`pip download --no-deps tritonclient==2.51.0` into that cache and unzip the binary out of the
wheel (the wheel is never installed: that version would downgrade onnx and protobuf).

The binary needs `libb64.so.0d` and `libcudart.so.12`; nvidia-pytriton carries both under hashed
names in `<site-packages>/nvidia_pytriton.libs`, so we symlink them into `<cache>/perf_analyzer/lib`
and put that folder on LD_LIBRARY_PATH for each run.

CLI: `python -m perf.perf_analyzer --locate` prints the paths; any other arguments are passed
through to perf_analyzer, e.g. `python -m perf.perf_analyzer -m rank_pipeline -i grpc ...`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from cascade import wheels

TRITONCLIENT_VERSION = "2.51.0"  # matches the tritonserver inside nvidia-pytriton 0.7.0
WHEEL_MEMBER = f"tritonclient-{TRITONCLIENT_VERSION}.data/data/bin/perf_analyzer"
WHEEL_GLOB = f"tritonclient-{TRITONCLIENT_VERSION}-*.whl"
ENV_BINARY = "CASCADE_PERF_ANALYZER"
# soname perf_analyzer asks for -> glob of the hashed copy in nvidia_pytriton.libs
NEEDED_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(RuntimeError):
    pass


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    lib_dir: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], env=self.env(), **kwargs)


def default_cache_dir() -> Path:
    root = os.environ.get("CASCADE_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "cascade") / "perf_analyzer"


def pytriton_libs() -> Path:
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise PerfAnalyzerError("nvidia-pytriton is not installed; perf_analyzer borrows libb64 and libcudart from its wheel")
    libs = Path(list(spec.submodule_search_locations)[0]).parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise PerfAnalyzerError(f"{libs} not found; reinstall nvidia-pytriton==0.7.0")
    return libs


def link_libs(lib_dir: Path, libs: Path | None = None) -> Path:
    """Symlink each needed soname to its hashed copy in nvidia_pytriton.libs."""
    libs = libs or pytriton_libs()
    lib_dir.mkdir(parents=True, exist_ok=True)
    for soname, pattern in NEEDED_LIBS.items():
        found = sorted(libs.glob(pattern))
        if not found:
            raise PerfAnalyzerError(f"perf_analyzer needs {soname}, but no {pattern} in {libs}")
        link = lib_dir / soname
        if link.is_symlink() or link.exists():
            if link.resolve() == found[0].resolve():
                continue
            link.unlink()
        link.symlink_to(found[0])
    return lib_dir


def download_wheel(wheel_dir: Path, python: str = sys.executable) -> Path:
    why = (f"perf_analyzer needs PyPI, or the tritonclient {TRITONCLIENT_VERSION} wheel in {wheel_dir}, "
           f"or ${ENV_BINARY} pointing at a binary.")
    try:
        return wheels.download_wheel(f"tritonclient=={TRITONCLIENT_VERSION}", WHEEL_GLOB, wheel_dir, why, python)
    except wheels.WheelDownloadError as err:
        raise PerfAnalyzerError(f"could not fetch perf_analyzer: {err}") from None


def extract_binary(wheel: Path, target: Path) -> Path:
    """Unzip the perf_analyzer member of the wheel to `target` (atomically) and make it executable."""
    with zipfile.ZipFile(wheel) as zf:
        if WHEEL_MEMBER not in zf.namelist():
            raise PerfAnalyzerError(f"{wheel} has no {WHEEL_MEMBER}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, zf.open(WHEEL_MEMBER) as src:
            shutil.copyfileobj(src, tmp)
    tmp_path = Path(tmp.name)
    tmp_path.chmod(0o755)
    tmp_path.replace(target)
    return target


def missing_libraries(analyzer: PerfAnalyzer) -> list[str]:
    """Sonames `ldd` cannot resolve with our LD_LIBRARY_PATH (empty if ldd is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    proc = subprocess.run([ldd, str(analyzer.binary)], capture_output=True, text=True, env=analyzer.env(), check=False)
    return [line.split("=>")[0].strip() for line in proc.stdout.splitlines() if "not found" in line]


def locate(cache_dir: Path | None = None) -> PerfAnalyzer:
    """A perf_analyzer that runs here, fetching and unpacking it the first time."""
    cache_dir = cache_dir or default_cache_dir()
    override = os.environ.get(ENV_BINARY)
    if override:
        binary = Path(override)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise PerfAnalyzerError(f"${ENV_BINARY}={override} is not an executable file")
    else:
        binary = cache_dir / "bin" / "perf_analyzer"
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            extract_binary(download_wheel(cache_dir / "wheels"), binary)
    analyzer = PerfAnalyzer(binary, link_libs(cache_dir / "lib"))
    missing = missing_libraries(analyzer)
    if missing:
        raise PerfAnalyzerError(f"{binary} cannot load {', '.join(missing)} (LD_LIBRARY_PATH starts with {analyzer.lib_dir})")
    return analyzer


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        analyzer = locate()
    except PerfAnalyzerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args or args == ["--locate"]:
        print(f"binary  {analyzer.binary}\nlib_dir {analyzer.lib_dir}")
        return 0
    return analyzer.run(args).returncode


if __name__ == "__main__":
    sys.exit(main())
