"""The house has no circles: a static walk (ast) over every import in mlcbuild_common/, train_links/ and builder/,
deferred imports inside functions included, finds no cycle between modules, none between builder's rooms
(compile/, convert/, models/, run/ and the pipeline modules) and none between the three packages, which import
downwards only: builder -> train_links -> mlcbuild_common."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mlcbuild_common", "train_links", "builder")  # ground floor, links, pipeline + CLI


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (top level or deferred)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `from pkg import mod` or `import pkg.mod.attr`: the longest known prefix
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    known = set(files)
    return {n: _imports(p, n, known) for n, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan), as sorted lists."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_deferred_imports_and_finds_cycles():
    g = graph()
    assert "builder.run.engine" in g["builder.run.latent"]  # a top-level relative import
    assert "train_links.pipeline" in g["builder.train_cmd"] or "train_links.config" in g["builder.train_cmd"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    assert cycles(graph()) == []


def _collapse(g: dict[str, set[str]], level) -> dict[str, set[str]]:
    """The graph between groups of modules, `level(module)` naming each module's group."""
    out: dict[str, set[str]] = {}
    for a, deps in g.items():
        out.setdefault(level(a), set()).update(level(b) for b in deps if level(b) != level(a))
    return out


def _room(name: str) -> str:
    """builder's subpackages are rooms; each of its top-level modules (the pipeline, the CLI) is its own."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "builder" else parts[0]


def test_packages_import_in_one_direction():
    """builder (pipeline, CLI) -> train_links (links, training) -> mlcbuild_common (errors, atomic files, progress),
    never back: train_links resolves no preset names itself (builder passes fetch in as `resolve`)."""
    g = graph()
    packages = _collapse(g, lambda n: n.split(".")[0])
    assert packages == {"builder": {"train_links", "mlcbuild_common"}, "train_links": {"mlcbuild_common"},
                        "mlcbuild_common": set()}


def test_builder_rooms_have_no_circles():
    rooms = _collapse(g := graph(), _room)
    assert cycles(rooms) == []
    # the rooms the issue names exist and stand where the data flows: compile/ and run/ never reach the pipeline
    assert {"builder.compile", "builder.run", "builder.convert", "builder.models"} <= set(rooms)
    assert "builder.make" not in rooms["builder.compile"] | rooms["builder.run"] | rooms["builder.convert"]
    assert not any(m.startswith("builder") for m in g["train_links.agents"])
