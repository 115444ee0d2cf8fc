"""How the code is structured, measured: import cycles, the largest functions, and where each extension point's
names are recognised (what adding a rule, a backbone or a meta-gradient estimator has to touch).

    python bench/structure_report.py [--root DIR] [--json OUT]

``--root`` points at another checkout (e.g. ``git worktree add /tmp/before <commit>``) to measure it the same way.
Imports are read from the source with ``ast``, including imports inside functions (which hide cycles from a
reader of the module headers), and ``importlib.import_module`` calls are not followed: a registry that discovers
its modules does not make the package import itself.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

PACKAGES = ("app", "core", "models")
# A name of each extension point that only its own module should spell: a quoted rule name, backbone name or
# estimator selector. Files (outside tests) that spell it are files a new one of its kind would have to touch.
EXTENSION_NAMES = {
    "rule": ("per_step", "PerStepRule", "meta_sgd", "MetaSGDRule", "alfa_random"),
    "backbone": ("resnet12", "ResNet12"),
    "estimator": ("second_order", "first_order", "MAMLGradient", "RecomputingMAMLGradient", "BatchedMAMLGradient",
                  "maml", "fomaml"),
}


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    type_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # annotations only: not a dependency at run time
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # The longest known module the import names (``from core.rules import build_rule`` -> core.rules).
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(result)


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles between sibling modules/packages at the top of each package (what import-linter's acyclic_siblings
    checks): ``core.checkpoint.catalog -> core.train`` counts as ``core.checkpoint -> core.train``."""
    collapsed: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = source.split("."), target.split(".")
            common = 0
            while common < min(len(a), len(b)) - 1 and a[common] == b[common]:
                common += 1
            left, right = ".".join(a[: common + 1]), ".".join(b[: common + 1])
            if left != right and left.rpartition(".")[0] == right.rpartition(".")[0]:
                collapsed.setdefault(left, set()).add(right)
    return cycles(collapsed)


def largest_functions(found: dict[str, Path], root: Path, count: int = 10) -> list[dict]:
    sizes = []
    for path in found.values():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes.append({"function": f"{path.relative_to(root)}::{node.name}",
                              "lines": node.end_lineno - node.lineno + 1})
    return sorted(sizes, key=lambda s: -s["lines"])[:count]


def _spelled_names(tree: ast.AST) -> set[str]:
    """String constants (docstrings excepted) and identifiers the code uses: what it recognises things by."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    spelled = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            spelled.add(node.value)
        # Class names used as identifiers; a lower-case identifier (a local ``per_step``) names nothing registered.
        elif isinstance(node, ast.Name) and node.id[:1].isupper():
            spelled.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr[:1].isupper():
            spelled.add(node.attr)
        elif isinstance(node, ast.alias):
            spelled.add(node.name.rpartition(".")[2])
        elif isinstance(node, ast.ClassDef):
            spelled.add(node.name)
    return spelled


def recognised_names(found: dict[str, Path], root: Path) -> dict[str, dict[str, list[str]]]:
    spelled = {path: _spelled_names(ast.parse(path.read_text())) for path in found.values()}
    return {
        kind: {name: sorted(str(path.relative_to(root)) for path, used in spelled.items() if name in used)
               for name in names}
        for kind, names in EXTENSION_NAMES.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.root.resolve()
    found = modules(root)
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    report = {
        "root": str(root),
        "modules": len(found),
        "lines": sum(len(p.read_text().splitlines()) for p in found.values()),
        "module_cycles": cycles(graph),
        "sibling_cycles": package_cycles(graph),
        "largest_functions": largest_functions(found, root),
        "files_spelling_an_extension_name": recognised_names(found, root),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['modules']} modules, {report['lines']} lines under {', '.join(PACKAGES)}")
    print(f"module cycles ({len(report['module_cycles'])}):")
    for cycle in report["module_cycles"]:
        print("  " + " <-> ".join(cycle))
    print(f"sibling cycles ({len(report['sibling_cycles'])}):")
    for cycle in report["sibling_cycles"]:
        print("  " + " <-> ".join(cycle))
    print("largest functions:")
    for entry in report["largest_functions"]:
        print(f"  {entry['lines']:4d}  {entry['function']}")
    print("files that spell an extension point's names (outside tests):")
    for kind, names in report["files_spelling_an_extension_name"].items():
        for name, files in names.items():
            print(f"  {kind} {name}: {len(files)}  {', '.join(files)}")


if __name__ == "__main__":
    main()
