"""stable-diffusion.cpp's command-line tool, built as a test tool (never part of our tree).

Fetches the stable-diffusion-cpp-python source package from PyPI (it vendors stable-diffusion.cpp
and its ggml), checks its SHA-256 against the index, and builds `sd-cli` (CPU backend, no image
codecs) with cmake from PyPI and the system C++ compiler. Cached under /var/tmp/arrowquant-sdcpp;
the first build takes several minutes on two cores.
"""
import os
import shutil
import subprocess
import sys
import tarfile

import pypi_sdist

PACKAGE = "stable-diffusion-cpp-python"
VERSION = "0.4.7"
CMAKE = "cmake==4.4.5"
CACHE = "/var/tmp/arrowquant-sdcpp"


def _cmake():
    """cmake from PyPI, installed beside this Python."""
    exe = os.path.join(os.path.dirname(sys.executable), "cmake")
    if not os.path.exists(exe):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", CMAKE], check=True)
    return exe


def _quiet(args):
    """Run a build step; its output (compiler warnings of the vendored sources) only on failure."""
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")


def sd_cli():
    """The path of the built `sd-cli` (built on first use)."""
    exe = os.path.join(CACHE, f"sd-cli-{VERSION}")
    if os.path.exists(exe):
        return exe
    src = os.path.join(CACHE, "src")
    shutil.rmtree(src, ignore_errors=True)
    with tarfile.open(pypi_sdist.fetch(PACKAGE, VERSION, CACHE)) as tar:
        members = [m for m in tar.getmembers() if "/vendor/stable-diffusion.cpp/" in m.name]
        tar.extractall(src, members=members, filter="data")
    (root,) = [os.path.join(src, d, "vendor/stable-diffusion.cpp") for d in os.listdir(src)]
    build = os.path.join(CACHE, "build")
    cmake = _cmake()
    _quiet([cmake, "-S", root, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DSD_BUILD_EXAMPLES=ON",
            "-DSD_WEBP=OFF", "-DSD_WEBM=OFF", "-DGGML_NATIVE=OFF"])
    _quiet([cmake, "--build", build, "--target", "sd-cli", "-j", str(os.cpu_count() or 2)])
    shutil.copy(os.path.join(build, "bin", "sd-cli"), exe + ".part")
    os.replace(exe + ".part", exe)
    return exe


def convert(exe, src, dst, ty="f32"):
    """stable-diffusion.cpp's `convert` mode: its model loader reads `src` (every tensor through
    ggml) and writes `dst` with the tensors it converts at `ty` — quantized ones dequantized by
    ggml's own routines when `ty` is f32; the ones it keeps (biases, embeddings, …) as they were."""
    subprocess.run([exe, "-M", "convert", "-m", src, "-o", dst, "--type", ty], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
