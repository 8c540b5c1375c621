"""ggml's own block quantizers, built as a test tool (never part of our tree).

Fetches the llama-cpp-python source package from PyPI (it vendors llama.cpp), checks its SHA-256
against the index, compiles the one file that holds ggml's quantizers (ggml/src/ggml-quants.c) into
a shared library with the system C compiler, and calls `quantize_row_<type>_ref` — what
llama.cpp's quantizer runs for these types without an importance matrix — through ctypes.
Cached under /var/tmp/arrowquant-ggml-ref.
"""
import ctypes
import os
import subprocess
import tarfile

import numpy as np

import pypi_sdist

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
CACHE = "/var/tmp/arrowquant-ggml-ref"

# ggml type name → (block values, block bytes)
BLOCKS = {
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
}

# ggml-quants.c calls these from ggml.c; the reference row quantizers need none of them.
STUB = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "ggml_abort %s:%d\n", file, line); abort(); }
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; abort(); }
size_t ggml_type_size(int type) { (void)type; abort(); }
const char * ggml_type_name(int type) { (void)type; return "?"; }
"""


def library():
    """The compiled reference quantizers (built on first use)."""
    so = os.path.join(CACHE, f"ggml-quants-{VERSION}.so")
    if not os.path.exists(so):
        os.makedirs(CACHE, exist_ok=True)
        src = os.path.join(CACHE, "src")
        with tarfile.open(pypi_sdist.fetch(PACKAGE, VERSION, CACHE)) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/ggml/" in m.name and (m.name.endswith(".h") or m.name.endswith("ggml-quants.c"))]
            tar.extractall(src, members=members, filter="data")
        (root,) = [os.path.join(src, d, "vendor/llama.cpp/ggml") for d in os.listdir(src)]
        stub = os.path.join(CACHE, "stub.c")
        open(stub, "w").write(STUB)
        subprocess.run(
            ["cc", "-O2", "-shared", "-fPIC", "-std=gnu11", f"-I{root}/include", f"-I{root}/src",
             os.path.join(root, "src/ggml-quants.c"), stub, "-o", so + ".part", "-lm"],
            check=True,
        )
        os.replace(so + ".part", so)
    return ctypes.CDLL(so)


def quantize(lib, values, type_name):
    """ggml's reference encoding of `values` (rows of whole blocks, float32) as bytes."""
    per, size = BLOCKS[type_name]
    x = np.ascontiguousarray(values, np.float32).ravel()
    assert x.size % per == 0
    out = np.zeros(x.size // per * size, np.uint8)
    fn = getattr(lib, f"quantize_row_{type_name.lower().replace('_k', '_K')}_ref")
    fn.restype = None
    fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
    return out.reshape(-1, size)
