"""The shape the code must keep: one library under two thin faces, no import cycles (review 2026-12-01 §2)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "idme"
#: Only the faces may import these; everything else is library code a server or notebook imports.
FACE_ONLY = ("typer", "rich", "fastapi", "uvicorn")
FACES = ("idme.cli", "idme.server", "idme.__main__")


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ("idme", *path.relative_to(SRC).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, at any depth of the file (function-level imports count too)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_pkg else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def test_no_import_cycle_in_src() -> None:
    """No module of idme reaches itself through its imports (a cycle hides misplaced library code)."""
    mods = _modules()
    graph = {m: {d for d in _imports(m, p) if d in mods and d != m} for m, p in mods.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_library_modules_do_not_import_the_faces_toolkits() -> None:
    """Below the CLI and the server nothing imports typer, rich or fastapi, nor the faces themselves."""
    bad = []
    for m, p in _modules().items():
        if m.startswith(FACES):
            continue
        for dep in _imports(m, p):
            if dep.split(".")[0] in FACE_ONLY or dep.startswith(FACES):
                bad.append(f"{m} imports {dep}")
    assert not bad, bad


def test_the_cli_builds_sessions_only_through_the_api() -> None:
    """The CLI never assembles a session itself (Labeller, Pipeline, SpeakerTracker are the library's)."""
    for path in (SRC / "cli").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in ("Labeller(", "Pipeline(", "SpeakerTracker(", "LiveSession("):
            assert name not in text, f"{path.name} builds {name[:-1]} itself"
