"""The house has no circles: a static walk (ast) over every import in builder/ and train_links/, deferred imports
inside functions included, finds no cycle between modules and none between the two packages."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("builder", "train_links")


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
    assert "builder.engine" in g["builder.latent"]  # a top-level relative import
    assert "train_links.pipeline" in g["train_links.cli"] or "train_links.config" in g["train_links.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    assert cycles(graph()) == []


def test_packages_import_in_one_direction():
    """builder (pipeline, CLI) may use train_links; train_links uses only builder's ground floor (errors, files,
    progress, fetch) and never the pipeline or the CLI above it."""
    g = graph()
    pkg = {n: n.split(".")[0] for n in g}
    up = {(pkg[a], pkg[b]) for a, deps in g.items() for b in deps if pkg[a] != pkg[b]}
    ground = {"builder.errors", "builder.fsutil", "builder.progress", "builder.fetch", "builder.clickutil"}
    low = {b for a, deps in g.items() if pkg[a] == "train_links" for b in deps if pkg[b] == "builder"}
    assert low <= ground | {"builder"}, sorted(low - ground)
    assert up <= {("builder", "train_links"), ("train_links", "builder")}
