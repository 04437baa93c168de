"""Issue 17's house metrics, measured the same way before and after a refactor.

Prints: modules at the top level of ``pistachio_infra/``, the longest functions (ast end_lineno - lineno + 1),
import cycles between packages (module-level imports only, via ast), and the lines that mention ``os.environ``.

    uv run --frozen python scripts/house_metrics.py [--top N]
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "pistachio_infra"
# Standalone programs that run inside pods/stand-ins, not part of the package's import graph.
STANDALONE = ("sandbox/standins/",)


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if not any(s in str(p.relative_to(PKG)) for s in STANDALONE))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def longest_functions(top: int) -> list[tuple[int, str]]:
    found = []
    for path in modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(PKG)}:{node.name}"))
    return sorted(found, reverse=True)[:top]


def package_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "pistachio_infra" or len(parts) < 2:
        return None
    return parts[1] if (PKG / parts[1]).is_dir() else "<top>." + parts[1]


def package_graph(runtime_only: bool) -> dict[str, set[str]]:
    """Edges package -> package from imports at module level (function-level imports are lazy by intent)."""
    graph: dict[str, set[str]] = {}
    for path in modules():
        here = dotted(path)
        src = package_of(here)
        if src is None:
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if runtime_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            stmts = [node] if not isinstance(node, ast.If) else []
            for stmt in stmts:
                targets: list[str] = []
                if isinstance(stmt, ast.Import):
                    targets = [a.name for a in stmt.names]
                elif isinstance(stmt, ast.ImportFrom):
                    base = stmt.module or ""
                    if stmt.level:
                        pkg_parts = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                        pkg_parts = pkg_parts[: len(pkg_parts) - (stmt.level - 1)]
                        base = ".".join(pkg_parts + ([base] if base else []))
                    targets = [base] + [f"{base}.{a.name}" for a in stmt.names]
                for t in targets:
                    dst = package_of(t)
                    if dst and dst != src:
                        graph.setdefault(src, set()).add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of packages that reach each other (strongly connected), reported once per pair of direct edges."""
    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    out = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            if a in reach(b) and not b.startswith("<top>") and not a.startswith("<top>"):
                out.append((a, b))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    top = sorted(p.name for p in PKG.glob("*.py"))
    print(f"top-level modules: {len(top)} ({', '.join(top)})")
    print(f"longest functions (top {args.top}):")
    for n, name in longest_functions(args.top):
        print(f"  {n:4d}  {name}")
    pairs = cycles(package_graph(runtime_only=True))
    print(f"package import cycles (module-level, runtime): {len(pairs)} edges in cycles")
    for a, b in pairs:
        print(f"  {a} -> {b}")
    grep = subprocess.run(["grep", "-rn", "os.environ", "pistachio_infra", "--include=*.py"],
                          cwd=ROOT, capture_output=True, text=True).stdout.splitlines()
    rest = [g for g in grep if not g.startswith(("pistachio_infra/settings.py", "pistachio_infra/cli.py"))]
    print(f"os.environ lines: {len(grep)} (outside settings.py and cli.py: {len(rest)})")
    for line in rest:
        print("  " + line[:150])


if __name__ == "__main__":
    main()
