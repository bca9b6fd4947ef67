"""Our TensorRT calls, checked against the real Python API of every release we claim.

Why: TensorRT is imported lazily and cannot be installed on any machine of ours, so no test ever
executes a ``trt.`` attribute, and a name that a release removed (TensorRT 11 dropped
``BuilderFlag.FP16``, ``OBEY_PRECISION_CONSTRAINTS`` and ``ILayer.precision``) or a misspelt one
would only fail on a user's GPU. This module walks our source with :mod:`ast` and checks each
attribute chain rooted at the ``tensorrt`` module against the API that
:mod:`segstyle.export.backend.trt.api_release` records from each release's real bindings.

What counts as the module: ``import tensorrt [as X]``, a parameter named ``trt``, the result of
``require_tensorrt()``, and whatever those are assigned to (``self.trt`` included). Objects get a
TensorRT type from the call that made them (``trt.Builder(logger)`` is a ``Builder``,
``builder.create_network(0)`` an ``INetworkDefinition``: pybind11's return annotations), from
``self.<attr>`` assignments within a class, from a same-file function's returns and, for a
parameter, from its same-file call sites when they agree. Attributes of objects of unknown type are
not checked. A call of a TensorRT function, method or class is bound to the release's pybind11
signatures (positional count, keyword names, required parameters): fitting none is a finding too.

Gates, evaluated per release (a branch the release cannot take is not checked for it):
``if`` tests comparing a parsed major version (``trt_major(...)``, ``int(trt.__version__.split(".")[0])``
or a name assigned from one) with an int; ``hasattr(<trt chain>, "NAME")``; ``and`` / ``or`` /
``not`` of those. After an ``if`` whose taken branch ends in ``raise`` or ``return``, the rest of
the block is unreachable for that release (``if trt_major(trt.__version__) >= 11: raise ...``).
Asked to, it also lists the names a release's docstrings mark ``[DEPRECATED]`` (not failures: the
TensorRT 10 weakly typed fallback uses ``BuilderFlag.FP16``, deprecated since 10.12, on purpose).
A refusal in a called function does not gate its caller: put the gate where the call is. Each
finding is one line: ``file:line: trt.X.Y does not exist in TensorRT <version>`` (or
``trt.X.y(2 positional, k=) matches no signature in TensorRT <version>``).
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from pathlib import Path

MOD = ("mod",)
MAJOR = ("major",)
MISSING, NO_SIGNATURE, DEPRECATED = "does not exist", "matches no signature", "is deprecated"
CONFLICT = ("conflict",)  # call sites (or returns) that disagree: the value is unknown
_CMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}


@dataclass
class _File:
    """The analysis state of one source file for one release."""

    api: dict
    major: int
    funcs: dict = field(default_factory=dict)      # name -> FunctionDef of the module-level functions
    params: dict = field(default_factory=dict)     # function name -> {param: value seen at call sites} (last pass)
    returns: dict = field(default_factory=dict)    # function name -> value of its returns (last pass)
    new_params: dict = field(default_factory=dict)  # the same, being collected by this pass
    new_returns: dict = field(default_factory=dict)
    selfs: dict = field(default_factory=dict)      # class name -> {attr: value}
    findings: set = field(default_factory=set)     # (line, subject, problem)
    report: bool = False
    deprecated: bool = False                       # also report names the release marks [DEPRECATED]


def _known(val):
    return None if val == CONFLICT else val


def _attr(st: _File, val, name: str, line: int):
    """The value of ``val.name``; records a finding when ``val`` is a TensorRT value lacking ``name``."""
    if val == MOD:
        table, owner = st.api["module"], None
    elif isinstance(val, tuple) and val[0] in ("cls", "obj") and val[1] in st.api["classes"]:
        table, owner = st.api["classes"][val[1]], val[1]
    else:
        return None
    ent = table.get(name)
    if ent is None:
        if st.report:
            st.findings.add((line, "trt." + (f"{owner}.{name}" if owner else name), MISSING))
        return None
    kind, typ = ent["kind"], ent["type"]
    if ent.get("deprecated") and st.report and st.deprecated:
        st.findings.add((line, "trt." + (f"{owner}.{name}" if owner else name), DEPRECATED))
    if kind == "class":
        return ("cls", typ) if typ else None
    if kind == "function":
        where = f"trt.{owner}.{name}" if owner else f"trt.{name}"
        return ("fn", typ, where, ent.get("sigs"), val[0] == "obj")
    if kind == "property" and val[0] == "cls":
        return None
    return ("obj", typ) if typ else None


def _ev(st: _File, node, env: dict):
    """Evaluate an expression: its TensorRT value (or None), checking every chain inside it."""
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _ev(st, node.value, env)
        if base and base[0] == "self":
            return st.selfs.get(base[1], {}).get(node.attr)
        return _attr(st, base, node.attr, node.lineno)
    if isinstance(node, ast.Call):
        fn = _ev(st, node.func, env)
        args = [_ev(st, a, env) for a in node.args]
        for kw in node.keywords:
            _ev(st, kw.value, env)
        name = node.func.id if isinstance(node.func, ast.Name) else (
            node.func.attr if isinstance(node.func, ast.Attribute) else None)
        if name == "require_tensorrt":
            return MOD
        if (name == "getattr" and isinstance(node.func, ast.Name) and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            return _attr(st, args[0], node.args[1].value, node.lineno)  # getattr(x, "n", default) is not checked
        if name == "trt_major" or (name == "int" and args and args[0] == ("vparts",)):
            return MAJOR
        if isinstance(node.func, ast.Name) and name in st.funcs:
            _bind(st, st.funcs[name], args, node.keywords, env)
            return _known(st.returns.get(name))
        if isinstance(node.func, ast.Attribute) and node.func.attr == "split" and fn is None:
            inner = node.func.value
            if isinstance(inner, ast.Attribute) and inner.attr == "__version__" and _ev(st, inner.value, env) == MOD:
                return ("vsplit",)
        if fn and fn[0] == "cls":
            init = st.api["classes"].get(fn[1], {}).get("__init__", {})
            _check_call(st, node, f"trt.{fn[1]}", init.get("sigs"), True)
            return ("obj", fn[1])
        if fn and fn[0] == "fn":
            _check_call(st, node, fn[2], fn[3], fn[4])
            return ("obj", fn[1]) if fn[1] else None
        return None
    if isinstance(node, ast.Subscript):
        base = _ev(st, node.value, env)
        _ev(st, node.slice, env)
        if base and base[0] in ("list", "dict"):
            return base[1]
        return ("vparts",) if base == ("vsplit",) else None
    if isinstance(node, ast.Tuple):
        return ("tuple", tuple(_ev(st, e, env) for e in node.elts))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        inner = dict(env)
        for gen in node.generators:
            _ev(st, gen.iter, inner)
            _bind_target(st, gen.target, None, inner)
            for cond in gen.ifs:
                _ev(st, cond, inner)
        vals = {part: _ev(st, getattr(node, part), inner) for part in ("elt", "key", "value") if hasattr(node, part)}
        if isinstance(node, ast.ListComp) and vals["elt"]:
            return ("list", vals["elt"])
        if isinstance(node, ast.DictComp) and vals["value"]:
            return ("dict", vals["value"])
        return None
    if isinstance(node, ast.Lambda):
        inner = dict(env)
        for a in node.args.args:
            inner[a.arg] = MOD if a.arg == "trt" else None
        _ev(st, node.body, inner)
        return None
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            _ev(st, child, env)
    return None


def _binds(sig: list, npos: int, keywords: set) -> bool:
    """Whether ``npos`` positional arguments and ``keywords`` bind to one pybind11 signature."""
    names = [n for n, _ in sig]
    if "*" in names:  # a bare * ends the positional parameters
        positional, kwonly = sig[:names.index("*")], sig[names.index("*") + 1:]
    else:
        positional, kwonly = sig, []
    if any(n.startswith("*") and not n.startswith("**") for n, _ in positional):
        return True  # *args: anything goes
    if npos > len(positional):
        return False
    by_name = positional[npos:] + kwonly
    if not keywords <= {n for n, _ in by_name} and not any(n.startswith("**") for n in names):
        return False
    return all(default or n in keywords or n.startswith("*") for n, default in by_name)


def _check_call(st: _File, call: ast.Call, where: str, sigs, bound: bool) -> None:
    """Record a finding when the call's arguments fit none of the release's signatures of ``where``."""
    if not st.report or not sigs or any(isinstance(a, ast.Starred) for a in call.args) or any(
            kw.arg is None for kw in call.keywords):
        return
    keywords = {kw.arg for kw in call.keywords}
    fits = [sig[1:] if bound and sig and sig[0][0] == "self" else sig for sig in sigs]
    if not any(_binds(sig, len(call.args), keywords) for sig in fits):
        given = ", ".join([f"{len(call.args)} positional"] + sorted(f"{k}=" for k in keywords))
        st.findings.add((call.lineno, f"{where}({given})", NO_SIGNATURE))


def _bind(st: _File, fn: ast.FunctionDef, args: list, keywords, env: dict) -> None:
    """Record the values a same-file call passes to ``fn``'s parameters (kept only when all calls agree)."""
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    seen = st.new_params.setdefault(fn.name, {})
    pairs = list(zip(names, args)) + [(kw.arg, _ev(st, kw.value, env)) for kw in keywords if kw.arg]
    for name, val in pairs:
        seen[name] = val if seen.get(name, val) == val else CONFLICT


def _bind_target(st: _File, target, val, env: dict) -> None:
    if isinstance(target, ast.Name):
        env[target.id] = val
    elif isinstance(target, (ast.Tuple, ast.List)):
        vals = val[1] if val and val[0] == "tuple" and len(val[1]) == len(target.elts) else [None] * len(target.elts)
        for t, v in zip(target.elts, vals):
            _bind_target(st, t, v, env)
    elif isinstance(target, ast.Attribute):
        base = _ev(st, target.value, env)
        if base and base[0] == "self":
            st.selfs.setdefault(base[1], {})[target.attr] = val
        else:
            _attr(st, base, target.attr, target.lineno)  # a store into a TensorRT object: the name must exist
    elif isinstance(target, ast.Subscript):
        _ev(st, target.value, env)
        _ev(st, target.slice, env)
    elif isinstance(target, ast.Starred):
        _bind_target(st, target.value, None, env)


def _truth(st: _File, test, env: dict):
    """True / False when ``test`` is a version or hasattr gate decided for this release, else None."""
    if isinstance(test, ast.BoolOp):
        vals = [_truth(st, v, env) for v in test.values]
        if isinstance(test.op, ast.And):
            return False if False in vals else (True if all(v is True for v in vals) else None)
        return True if True in vals else (False if all(v is False for v in vals) else None)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = _truth(st, test.operand, env)
        return None if v is None else not v
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _CMP:
        left, right = test.left, test.comparators[0]
        op = _CMP[type(test.ops[0])]
        if _ev(st, left, env) == MAJOR and isinstance(right, ast.Constant) and isinstance(right.value, int):
            return op(st.major, right.value)
        if _ev(st, right, env) == MAJOR and isinstance(left, ast.Constant) and isinstance(left.value, int):
            return op(left.value, st.major)
        return None
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id == "hasattr"
            and len(test.args) == 2 and isinstance(test.args[1], ast.Constant)):
        owner = _ev(st, test.args[0], env)
        if owner == MOD:
            return test.args[1].value in st.api["module"]
        if owner and owner[0] in ("cls", "obj") and owner[1] in st.api["classes"]:
            return test.args[1].value in st.api["classes"][owner[1]]
    return None


def _block(st: _File, body: list, env: dict, fname: str | None) -> bool:
    """Run the statements of one block; True when it certainly ends in ``raise``/``return``."""
    for stmt in body:
        if _stmt(st, stmt, env, fname):
            return True
    return False


def _stmt(st: _File, node, env: dict, fname: str | None) -> bool:
    if isinstance(node, ast.If):
        _ev(st, node.test, env)
        t = _truth(st, node.test, env)
        if t is True:
            return _block(st, node.body, env, fname)
        if t is False:
            return _block(st, node.orelse, env, fname)
        a = _block(st, node.body, env, fname)
        b = _block(st, node.orelse, env, fname)
        return a and b
    if isinstance(node, (ast.Return, ast.Raise)):
        expr = node.value if isinstance(node, ast.Return) else node.exc
        val = _ev(st, expr, env) if expr is not None else None
        if isinstance(node, ast.Return) and fname:
            st.new_returns[fname] = val if st.new_returns.get(fname, val) == val else CONFLICT
        return True
    if isinstance(node, ast.Assign):
        val = _ev(st, node.value, env)
        for t in node.targets:
            _bind_target(st, t, val, env)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        val = _ev(st, node.value, env) if node.value is not None else None
        if isinstance(node, ast.AnnAssign):
            val = val or _annotation(st, node.annotation, env)
        _bind_target(st, node.target, val if isinstance(node, ast.AnnAssign) else None, env)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if isinstance(node, ast.Import) and alias.name == "tensorrt":
                env[alias.asname or "tensorrt"] = MOD
            elif isinstance(node, ast.ImportFrom) and node.module == "tensorrt":
                env[alias.asname or alias.name] = _attr(st, MOD, alias.name, node.lineno)
            else:
                env[(alias.asname or alias.name).split(".")[0]] = None
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        it = _ev(st, node.iter, env)
        _bind_target(st, node.target, it[1] if it and it[0] == "list" else None, env)
        _block(st, node.body, env, fname)
        _block(st, node.orelse, env, fname)
    elif isinstance(node, ast.While):
        _ev(st, node.test, env)
        _block(st, node.body, env, fname)
        _block(st, node.orelse, env, fname)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        for item in node.items:
            val = _ev(st, item.context_expr, env)
            if item.optional_vars is not None:
                _bind_target(st, item.optional_vars, val, env)
        return _block(st, node.body, env, fname)
    elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
        a = _block(st, node.body, env, fname)
        for h in node.handlers:
            if h.type is not None:
                _ev(st, h.type, env)
            _block(st, h.body, env, fname)
        _block(st, node.orelse, env, fname)
        _block(st, node.finalbody, env, fname)
        return a and not node.handlers
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        _function(st, node, env, node.name if fname is None else None)
    elif isinstance(node, ast.ClassDef):
        for expr in node.decorator_list + node.bases + [kw.value for kw in node.keywords]:
            _ev(st, expr, env)
        body_env = dict(env)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                _function(st, item, env, f"{node.name}.{item.name}", owner=node.name)
            else:
                _stmt(st, item, body_env, None)
    else:  # any other statement (match, assert, delete, ...): its expressions and nested blocks
        _generic(st, node, env, fname)
    return False


def _generic(st: _File, node, env: dict, fname: str | None) -> None:
    for _, value in ast.iter_fields(node):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.expr):
                _ev(st, item, env)
            elif isinstance(item, ast.stmt):
                _stmt(st, item, env, fname)
            elif isinstance(item, ast.AST):
                _generic(st, item, env, fname)


def _annotation(st: _File, ann, env: dict):
    """The TensorRT class an annotation names (a quoted one too), checking its chain; else None."""
    if ann is None:
        return None
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        try:
            ann = ast.fix_missing_locations(ast.copy_location(ast.parse(ann.value, mode="eval").body, ann))
        except SyntaxError:
            return None
        for sub in ast.walk(ann):
            sub.lineno = ann.lineno
    val = _ev(st, ann, env)
    return ("obj", val[1]) if val and val[0] == "cls" else None


def _function(st: _File, fn, outer: dict, key: str | None, owner: str | None = None) -> None:
    """Check a function body with its parameters bound (``trt`` -> the module, ``self`` -> its class,
    else the same-file call sites' value or a TensorRT annotation)."""
    for expr in fn.decorator_list + fn.args.defaults + [d for d in fn.args.kw_defaults if d is not None]:
        _ev(st, expr, outer)
    _annotation(st, fn.returns, outer)
    env = dict(outer)
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    seen = st.params.get(key, {}) if key else {}
    for i, a in enumerate(args):
        typed = _annotation(st, a.annotation, outer)
        if a.arg == "trt":
            env[a.arg] = MOD
        elif owner and i == 0 and not any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list):
            env[a.arg] = ("self", owner)
        else:
            env[a.arg] = _known(seen.get(a.arg)) or typed
    for a in (fn.args.vararg, fn.args.kwarg):
        if a is not None:
            env[a.arg] = None
    _block(st, fn.body, env, key)


def check_source(source: str, api: dict, filename: str = "<string>", *,
                 deprecated: bool = False) -> list[tuple[int, str, str]]:
    """(line, subject, problem) for every TensorRT name ``source`` uses that ``api``'s release lacks
    (``trt.X.Y``, :data:`MISSING`) and every call whose arguments fit none of its signatures there
    (``trt.X.y(2 positional, k=)``, :data:`NO_SIGNATURE`), outside gates; with ``deprecated``, also
    every name the release's docstrings mark ``[DEPRECATED]`` (:data:`DEPRECATED`)."""
    tree = ast.parse(source, filename)
    st = _File(api=api, major=int(api["version"].split(".")[0]), deprecated=deprecated)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            st.funcs[node.name] = node
    for _ in range(20):  # call-site and return values to a fixed point, then the checking pass
        _block(st, tree.body, {}, None)
        done = (st.new_params, st.new_returns) == (st.params, st.returns)
        st.params, st.returns, st.new_params, st.new_returns = st.new_params, st.new_returns, {}, {}
        if done:
            break
    st.report = True
    _block(st, tree.body, {}, None)
    return sorted(st.findings)


def check_files(paths, api: dict, root: Path | None = None, *, deprecated: bool = False) -> list[str]:
    """The finding lines ``file:line: trt.X does not exist in TensorRT <version>`` for ``paths``."""
    lines = []
    for path in paths:
        path = Path(path)
        shown = path.relative_to(root) if root else path
        for line, subject, problem in check_source(path.read_text(), api, str(path), deprecated=deprecated):
            lines.append(f"{shown}:{line}: {subject} {problem} in TensorRT {api['version']}")
    return lines
