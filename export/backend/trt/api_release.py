"""The Python API of the TensorRT releases we claim, read from NVIDIA's real bindings wheels.

:mod:`segstyle.export.backend.trt.api_check` checks our TensorRT calls against this. No machine of
ours can install TensorRT (its C libraries need an NVIDIA driver stack), but the
``tensorrt-cu12-bindings`` wheel of each release holds the real pybind11 extension module. Its
import needs ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and ``libnvinfer_plugin.so.N`` only to
resolve nine C entry points (``createInferBuilder_INTERNAL`` ...), none of which module
initialisation calls. So :func:`release_api` compiles stand-ins for those three libraries with
``cc`` (every entry point returns NULL or 0; nothing here can build or run an engine), places them
beside the unpacked extension (its RPATH is ``$ORIGIN``), imports it in a child process and records
by introspection every module name, class, enum member, method and property with its pybind11
return type. The result is cached as ``api-<version>.json`` next to the wheels (``.venv/trt-api/``,
git-ignored: nothing derived from NVIDIA's binaries is committed). ``make setup`` downloads the
wheels (``python -m segstyle.export.backend.trt.api_release download .venv/trt-api``).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from segstyle.core.errors import SegstyleError
from segstyle.core.io import atomic_path

# The releases we claim (pyproject: tensorrt>=10,<12): the first and the JetPack 6 release of 10.x, the
# newest 10.x, the first and the newest 11.x on PyPI. cu12 builds: 10.0-10.13 exist only for CUDA 12.
RELEASES = ("10.0.1", "10.3.0", "10.16.1.11", "11.0.0.114", "11.4.0.106")
PACKAGE = "tensorrt-cu12-bindings"
FORMAT = 4  # bump when the recorded JSON changes shape: cached files of another format are regenerated

# The C symbols the extension module leaves undefined besides libc/libstdc++/libpython (nm -D
# --undefined-only on 10.0.1 ... 11.4.0.106), plus getInferLibVersion.
_STANDIN_C = """\
#include <stddef.h>
void *createInferBuilder_INTERNAL(void *a, int b) { return NULL; }
void *createInferRefitter_INTERNAL(void *a, void *b, int c) { return NULL; }
void *createInferRuntime_INTERNAL(void *a, int b) { return NULL; }
void *createNvOnnxParser_INTERNAL(void *a, void *b, int c) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *a, void *b, int c) { return NULL; }
void *getBuilderPluginRegistry(int a) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void *a, const char *b) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int getInferLibVersion(void) { return 0; }
"""
_LIBS = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")


def wheel_for(folder: Path, version: str) -> Path | None:
    """The downloaded bindings wheel of ``version`` in ``folder`` (None when absent)."""
    stem = PACKAGE.replace("-", "_") + f"-{version}-"
    found = sorted(p for p in Path(folder).glob("*.whl") if p.name.startswith(stem))
    return found[-1] if found else None


def download(folder: Path, releases=RELEASES) -> list[str]:
    """``pip download --no-deps`` each release's bindings wheel into ``folder`` (never installed).

    Returns the releases that publish no wheel for this Python (10.0.1 has none for 3.13): the API
    check skips, naming them, rather than ``make setup`` failing. Any other pip failure raises."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    absent = []
    for version in releases:  # one pip call each: pip resolves several pins of one name as a conflict
        if wheel_for(folder, version) is not None:
            continue
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder),
                            f"{PACKAGE}=={version}"], capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            if "No matching distribution found" not in last:
                raise SegstyleError(f"pip download {PACKAGE}=={version} failed: {last}")
            absent.append(version)
    return absent


def _dump(pkg_parent: str) -> None:
    """(Runs in the child process.) Print the JSON API of ``tensorrt_bindings`` found under ``pkg_parent``."""
    import json
    import re
    import sys

    sys.path.insert(0, pkg_parent)
    import tensorrt_bindings as trt

    prefixes = ("tensorrt_bindings.tensorrt.", "tensorrt_bindings.", "tensorrt.")
    classes: dict = {}

    def qual(cls):
        name = f"{cls.__module__}.{cls.__qualname__}"
        for p in prefixes:
            if name.startswith(p):
                return name[len(p):]
        return None  # not a TensorRT type (int, str, ...)

    def type_name(text):
        """A return annotation of a pybind11 signature -> the TensorRT class it names, else None."""
        text = text.strip().replace("typing.", "")
        m = re.fullmatch(r"Optional\[(.+)\]", text) or re.fullmatch(r"(.+?) \| None", text)
        if m:
            text = m.group(1)
        for p in prefixes:
            if text.startswith(p):
                return text[len(p):]
        return None

    def params(text):
        """``a: T, b: U = <X.Y: 0>`` -> [["a", False], ["b", True]] (``*args``/``**kwargs`` and a bare ``*`` kept as names)."""
        out, depth, cur = [], 0, ""
        for ch in text + ",":
            if ch == "," and depth == 0:
                part = cur.strip()
                if part and part != "/":
                    out.append([re.split(r"[:=]", part, maxsplit=1)[0].strip(), "=" in part])
                cur = ""
                continue
            depth += ch in "([{<"
            depth -= ch in ")]}>"
            cur += ch
        return out

    def signatures(name, doc):
        """(return type, [parameter lists of every signature]) from a pybind11 docstring."""
        overloaded = "Overloaded function." in (doc or "")
        types, sigs = set(), []
        for line in (doc or "").splitlines():
            m = re.match(r"\s*(\d+\.\s*)?" + re.escape(name) + r"\((.*)\)\s*->\s*(.+)$", line)
            if m and (m.group(1) or not overloaded):
                types.add(type_name(m.group(3)))
                sigs.append(params(m.group(2)))
        return (types.pop() if len(types) == 1 else None), (sigs or None)

    def entry(name, obj, owner):
        if isinstance(obj, type):
            q = qual(obj)
            if q is not None and q not in classes:
                record(obj, q)
            return {"kind": "class", "type": q}
        if isinstance(obj, property):
            doc = (obj.fget.__doc__ or "") if obj.fget else ""
            m = re.search(r"->\s*(.+)$", doc.strip().splitlines()[0] if doc.strip() else "")
            return {"kind": "property", "type": type_name(m.group(1)) if m else None}
        if callable(obj):
            typ, sigs = signatures(name, getattr(obj, "__doc__", ""))
            return {"kind": "function", "type": typ, "sigs": sigs}
        q = qual(type(obj))
        return {"kind": "member" if owner is not None and q == owner else "value", "type": q}

    def record(cls, q):
        """Every name of ``cls``; deprecated where its docstring, its enum member's paragraph of the class
        docstring ("Members: ... NAME : [DEPRECATED] ...") or its ``:ivar NAME:`` line says so."""
        classes[q] = {}
        attrs, documented = {}, {}
        text = cls.__doc__ if isinstance(cls.__doc__, str) else ""
        for m in re.finditer(r"^\s*(?::ivar )?(\w+) ?: (.*?)(?=^\s*(?::ivar )?\w+ ?: |\Z)", text, re.M | re.S):
            documented.setdefault(m.group(1), m.group(2))
        for name in dir(cls):
            raw = next((c.__dict__[name] for c in cls.__mro__ if name in c.__dict__), None)
            try:
                obj = raw if isinstance(raw, property) else getattr(cls, name)
            except Exception:  # noqa: BLE001  (a descriptor that fails without an instance: the name exists)
                obj = None
            attrs[name] = entry(name, obj, q)
            doc = getattr(obj, "__doc__", "") if callable(obj) and not isinstance(obj, type) else ""
            # at the start of a line: "[DEPRECATED]" inside a sentence is about something else
            if re.search(r"^\s*\[DEPRECATED\]", (doc or "") + "\n" + documented.get(name, ""), re.M):
                attrs[name]["deprecated"] = True
        classes[q] = attrs

    module = {name: entry(name, getattr(trt, name), None) for name in dir(trt)}
    print(json.dumps({"version": trt.__version__, "module": module, "classes": classes}, sort_keys=True))


def _extract(wheel: Path, version: str, build: Path) -> Path:
    """Unpack the wheel's ``tensorrt_bindings`` under ``build`` with the stand-in libraries beside it."""
    pkg = build / "tensorrt_bindings"
    if not (pkg / "tensorrt.so").is_file():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(build, [n for n in z.namelist() if n.startswith("tensorrt_bindings/")])
    src = build / "standin.c"
    src.write_text(_STANDIN_C)
    major = version.split(".")[0]
    for lib in _LIBS:
        so = pkg / f"{lib}.so.{major}"
        r = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), f"-Wl,-soname,{so.name}", str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SegstyleError(f"cc could not build the stand-in {so.name}: {r.stderr.strip()[:200]}")
    return build


def release_api(folder: Path, version: str) -> dict:
    """The recorded API of ``version`` (cached as ``folder/api-<version>.json``); raises if its wheel is absent."""
    folder = Path(folder).resolve()
    wheel = wheel_for(folder, version)
    if wheel is None:
        raise SegstyleError(f"no {PACKAGE} {version} wheel in {folder}; run `make setup`")
    cache = folder / f"api-{version}.json"
    try:
        api = json.loads(cache.read_text())
        if api.get("format") == FORMAT and api.get("wheel") == wheel.name:
            return api
    except (OSError, ValueError):
        pass
    build = _extract(wheel, version, folder / "build" / version)
    code = inspect.getsource(_dump) + f"\n_dump({str(build)!r})\n"
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=build)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise SegstyleError(f"importing the {version} bindings with stand-in libraries failed: {tail}")
    api = json.loads(r.stdout)
    if api["version"] != version:
        raise SegstyleError(f"the {wheel.name} bindings say they are TensorRT {api['version']}, not {version}")
    api.update(format=FORMAT, wheel=wheel.name)
    with atomic_path(cache) as tmp:  # two test processes may write it at once
        tmp.write_text(json.dumps(api, sort_keys=True))
    return api


if __name__ == "__main__":  # python -m segstyle.export.backend.trt.api_release download DIR (make setup)
    if sys.argv[1:2] != ["download"] or len(sys.argv) != 3:
        sys.exit("usage: python -m segstyle.export.backend.trt.api_release download DIR")
    try:
        for missing in download(Path(sys.argv[2])):
            print(f"warning: {PACKAGE} {missing} has no wheel for Python {sys.version_info.major}."
                  f"{sys.version_info.minor}; the TensorRT API check will skip", file=sys.stderr)
    except SegstyleError as e:
        sys.exit(f"error: {e}")
