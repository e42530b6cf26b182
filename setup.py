"""Builds edvr_fast._C from csrc/: the C++ part always, the CUDA part when torch has CUDA and nvcc exists.

Install with `pip install --no-build-isolation .` so the extension compiles against the installed torch.
Environment: TORCH_CUDA_ARCH_LIST (default below when no GPU is visible), MAX_JOBS (parallel compile
jobs), EDVR_FAST_BUILD_CUDA=0 (skip the CUDA kernels), CUDA_HOME (found automatically when unset),
EDVR_FAST_WITH_CODECS=0 (leave out the libjpeg-turbo / libpng partial decoders of the fused loader, which
are otherwise built when their headers and libraries are found). CXX / CC pick the compiler, which must
have a shared libstdc++ (checked first).
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# Architectures our users run, with PTX for newer GPUs. Used when TORCH_CUDA_ARCH_LIST is unset and no
# GPU is visible (torch's own default raises an IndexError without a GPU).
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0+PTX"


def _find_cuda_home() -> str | None:
    """CUDA_HOME if set, else the toolkit that holds nvcc (torch guesses /usr/local and fails to link)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    for cand in ("/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)):
        if os.path.exists(os.path.join(cand, "bin", "nvcc")):
            return cand
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(nvcc)
        home = os.path.dirname(os.path.dirname(real))
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    return None


def _wheel_cuda_includes() -> list[str]:
    """Headers that ATen's CUDA headers include (cublas_v2.h, cusparse.h...) live in the nvidia wheels."""
    try:
        import nvidia  # the namespace package of the nvidia-* wheels torch depends on
    except ImportError:
        return []
    dirs = []
    for base in getattr(nvidia, "__path__", []):
        dirs += sorted(glob.glob(os.path.join(base, "cu*", "include")))
        dirs += sorted(glob.glob(os.path.join(base, "*", "include")))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _header_dirs() -> list[str]:
    dirs = [d for var in ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH") for d in os.environ.get(var, "").split(":")]
    return [d for d in (*dirs, os.path.join(sys.prefix, "include"), "/usr/local/include", "/usr/include") if d]


def _check_shared_libstdcxx() -> None:
    """Refuse a compiler whose C++ runtime exists only as libstdc++.a (some relocatable GCC builds).

    It links a private copy of the C++ runtime into edvr_fast._C beside the libstdc++.so.6 that torch
    loads; every C++ error message formatted in the extension then crashes the process (measured: a
    segfault in std::ostream instead of a RuntimeError, on a machine whose CXX was such a GCC 13).
    """
    for var, default in (("CXX", "c++"), ("CC", sysconfig.get_config_var("CC"))):  # compiler, and linker
        value = os.environ.get(var) or default
        if not value:
            continue
        try:
            res = subprocess.run([*shlex.split(value), "-print-file-name=libstdc++.so"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue  # no such compiler: the build reports that itself
        found = res.stdout.strip()
        if res.returncode == 0 and found and not os.path.isabs(found):
            where = f"{var}={value}" if os.environ.get(var) else f"the default {var} ({value})"
            sys.exit(f"edvr_fast: {where} has no shared libstdc++ (libstdc++.so), only a static one: edvr_fast._C "
                     f"would carry its own C++ runtime next to torch's, and C++ errors in it crash the process. "
                     f"Build with a compiler that has libstdc++.so, e.g. "
                     f"`CXX=g++ CC=gcc pip install --no-build-isolation .`")


def _find_codecs() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The optional loader decoders whose headers (with the API we use) and libraries exist: name -> (macro, libs)."""
    if os.environ.get("EDVR_FAST_WITH_CODECS", "").strip() == "0":
        return {}
    from ctypes.util import find_library

    wanted = {
        # name: (header, symbol the header must declare, macro, libraries)
        "jpeg": ("jpeglib.h", "jpeg_crop_scanline", "EDVR_FAST_WITH_JPEG", ("jpeg",)),
        "png": ("png.h", "png_set_bgr", "EDVR_FAST_WITH_PNG", ("png",)),
        "zlib": ("zlib.h", "inflateReset2", None, ("z",)),  # png_banded.cpp: libpng's own dependency, used directly
    }
    found = {}
    for name, (header, symbol, macro, libs) in wanted.items():
        for d in _header_dirs():
            path = os.path.join(d, header)
            if os.path.isfile(path) and symbol in Path(path).read_text(errors="replace") and find_library(libs[0]):
                found[name] = (macro, libs)
                break
    zlib = found.pop("zlib", None)
    if "png" in found:  # png_codec.cpp + png_banded.cpp: libpng and zlib, else the loader reads PNG with cv2
        found["png"] = (found["png"][0], found["png"][1] + zlib[1]) if zlib else None
    return {k: v for k, v in found.items() if v}


def _want_cuda(torch) -> bool:
    if os.environ.get("EDVR_FAST_BUILD_CUDA", "").strip() == "0":
        return False
    return torch.version.cuda is not None and os.environ.get("CUDA_HOME") is not None


def _write_build_record(folder: Path, torch_version: str) -> None:
    """_C.build.json beside the module: the torch it was compiled against (edvr_fast/_extension.py reads it
    and refuses to load the module under another torch)."""
    import json

    if folder.is_dir():
        tmp = folder / "_C.build.json.tmp"
        tmp.write_text(json.dumps({"torch": torch_version}) + "\n")
        os.replace(tmp, folder / "_C.build.json")


def build_extensions():
    _check_shared_libstdcxx()
    cuda_home = _find_cuda_home()
    if cuda_home:
        os.environ.setdefault("CUDA_HOME", cuda_home)  # before cpp_extension reads it at import
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    with_cuda = _want_cuda(torch)
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        print(f"edvr_fast: no GPU visible, building for TORCH_CUDA_ARCH_LIST={DEFAULT_ARCH_LIST}")

    sources = ["csrc/module.cpp", "csrc/ops/modulated_deform_conv.cpp",
               "csrc/ops/autocast/modulated_deform_conv_autocast.cpp"]
    sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "ops" / "cpu").glob("*.cpp"))
    # jpeg_*.cpp / png_*.cpp need a codec library: built only when it is found (the loader uses cv2 without).
    codecs = _find_codecs()
    loader_dir = ROOT / "csrc" / "loader"
    codec_files = {name: sorted(loader_dir.glob(f"{name}_*.cpp")) for name in ("jpeg", "png")}
    sources += sorted(str(p.relative_to(ROOT)) for p in loader_dir.glob("*.cpp")
                      if not any(p in files for files in codec_files.values()))
    sources += [str(p.relative_to(ROOT)) for name in sorted(codecs) for p in codec_files[name]]
    define = [("EDVR_FAST_TORCH_VERSION", f'"{torch.__version__}"')]
    define += [(macro, None) for macro, _ in codecs.values()]
    libraries = [lib for _, libs in codecs.values() for lib in libs]
    # No -std flag: torch.utils.cpp_extension picks the standard its headers need (C++20 from torch 2.13).
    cxx = ["-O3", "-fvisibility=hidden"]
    include_dirs = [str(ROOT / "csrc")]
    kwargs: dict = {}
    # at::parallel_for is a header template: compiled without -fopenmp it runs every loop on one thread
    # (ATen's INTRA_OP_PARALLEL needs _OPENMP). Torch's own libgomp serves the pragmas at run time.
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        cxx.append("-fopenmp")
        kwargs["extra_link_args"] = ["-fopenmp"]
    if with_cuda:
        sources += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "ops" / "cuda").glob("*.cu"))
        define.append(("EDVR_FAST_WITH_CUDA", None))
        include_dirs += _wheel_cuda_includes()
        nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        ext_cls = CUDAExtension
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": nvcc}
    else:
        ext_cls = CppExtension
        kwargs["extra_compile_args"] = {"cxx": cxx}
    print(f"edvr_fast: building edvr_fast._C with{'' if with_cuda else 'out'} CUDA kernels "
          f"(torch {torch.__version__}, CUDA_HOME={os.environ.get('CUDA_HOME')})", file=sys.stderr)
    print(f"edvr_fast: fused loader partial decoders: {', '.join(sorted(codecs)) or 'none (cv2 fallback)'}",
          file=sys.stderr)
    ext = ext_cls("edvr_fast._C", sources, include_dirs=include_dirs, define_macros=define, libraries=libraries,
                  **kwargs)
    base = BuildExtension.with_options(use_ninja=True)

    class BuildExtensionIntoCheckout(base):
        """Also puts the built module into the source tree's package folder.

        pip builds in the checkout, and `python -m edvr_fast...` or `python -c` run from the checkout import
        the package from there (the current directory comes first on sys.path), not from site-packages:
        without its compiled part, the DCN would silently fall back and the fused loader would be missing.
        """

        def run(self):
            super().run()
            for ext in self.extensions:
                built = self.get_ext_fullpath(ext.name)
                _write_build_record(Path(built).parent, torch.__version__)
                if self.inplace:
                    continue
                target = ROOT / Path(*ext.name.split(".")[:-1]) / os.path.basename(built)
                if os.path.exists(built) and target.parent.is_dir():
                    shutil.copyfile(built, target)
                    _write_build_record(target.parent, torch.__version__)

    return [ext], {"build_ext": BuildExtensionIntoCheckout}


ext_modules, cmdclass = build_extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
