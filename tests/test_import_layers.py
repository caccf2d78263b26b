"""Dependencies point one way (training -> edge_app -> firmware_bridge; the cloud side may use edge_app's
message schemas, the device never imports the cloud side), with no import cycle between modules.

Read from the source with `ast` (every import, including ones inside functions; only `if TYPE_CHECKING:`
imports are left out, as they never run), so a lazy import cannot hide a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_app", "firmware_bridge")
#: Layers of edge_app, bottom up. A module may import its own layer and those below, never one above.
#: The domain packages (signal chain, inference, storage) and the core modules everything uses know nothing of
#: the services that carry results out (uplink, display, sinks), which know nothing of the assembly (daemon, CLI).
DOMAIN = ("edge_app.signal_chain", "edge_app.inference", "edge_app.storage")
CORE = ("edge_app.errors", "edge_app.results", "edge_app.config", "edge_app.mqtt_settings", "edge_app.messages",
        "edge_app.dispatcher", "edge_app.patient", "edge_app.jsonsafe", "edge_app.alarm_latch",
        "edge_app.command_router", "edge_app.operations", "edge_app.runtime_config", "edge_app.pipeline")
SERVICES = ("edge_app.uplink", "edge_app.display", "edge_app.sinks")
TOP = ("edge_app.daemon", "edge_app.cli")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    me = _module(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    # A package's __init__ importing its own submodules (re-exports) is how a package is built, not a dependency.
    return {m: {t for t in _imports(p) if t in modules and t != m and not t.startswith(m + ".")}
            for m, p in modules.items()}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_import_cycle_between_modules():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:             # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_no_upward_import():
    graph = _graph()
    upward = []
    for module, targets in graph.items():
        for target in targets:
            if module.startswith("firmware_bridge") and target.startswith("edge_app"):
                upward.append((module, target))
            elif _within(module, CORE + DOMAIN) and _within(target, SERVICES + TOP):
                upward.append((module, target))
            elif _within(module, SERVICES) and _within(target, TOP):
                upward.append((module, target))
    assert not upward, f"upward imports: {upward}"
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            bad = {t for t in _imports(path) if t.split(".")[0] in ("cloud_dashboard", "training", "tensorflow")}
            assert not bad, f"{path.relative_to(REPO)} imports {bad} (the device never imports them)"
