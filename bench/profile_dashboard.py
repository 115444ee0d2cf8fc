"""The dashboard's Streamlit server with every script run profiled by pyinstrument, and summaries of the profiles.

    python bench/profile_dashboard.py --profile-dir DIR -- app/main.py --server.port 8501 --server.headless true
    python bench/profile_dashboard.py --summarize DIR          # print what each recorded script run spent

``bench/dashboard_speed.py --profile`` starts the server this way, opens the pages it times and prints the
summaries. Needs ``pip install pyinstrument``.

Streamlit runs each page in a script thread of its own, which a profiler started around the server (cProfile,
``pyinstrument streamlit ...``) does not see. So this wraps two methods of Streamlit's ``ScriptRunner``
(private API, checked against streamlit 1.67): the profiler starts when a script run installs its event loop,
in the script thread, and stops when the run finishes. Each run is saved as ``DIR/<n>.pyisession`` with a line in
``DIR/index.jsonl`` (session id, page, query string, wall seconds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
INDEX = "index.jsonl"


def install_profiler(profile_dir: Path) -> None:
    """Profile every Streamlit script run of this process into ``profile_dir``."""
    from pyinstrument import Profiler
    from streamlit.runtime.scriptrunner import script_runner

    profile_dir.mkdir(parents=True, exist_ok=True)
    runner = script_runner.ScriptRunner
    original_install = runner._install_event_loop
    original_finished = runner._on_script_finished
    numbers = itertools.count(1)
    lock = threading.Lock()

    def install_event_loop(self) -> None:
        original_install(self)
        if getattr(self, "_bench_profiler", None) is None:
            # 1 ms samples: a page run takes from tenths of a second to seconds.
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            self._bench_profiler = profiler
            self._bench_started = time.time()

    def on_script_finished(self, ctx, event, premature_stop, run_descriptor) -> None:
        try:
            original_finished(self, ctx, event, premature_stop, run_descriptor)
        finally:
            profiler = getattr(self, "_bench_profiler", None)
            self._bench_profiler = None
            if profiler is not None:
                wall_s = time.time() - self._bench_started
                session = profiler.stop()
                try:
                    page = (self._pages_manager.get_pages().get(ctx.page_script_hash) or {}).get("url_pathname", "")
                except Exception as error:  # noqa: BLE001 - the page name only labels the record
                    page = f"? ({type(error).__name__})"
                with lock:
                    number = next(numbers)
                    session.save(str(profile_dir / f"{number}.pyisession"))
                    record = {
                        "run": number, "session_id": ctx.session_id, "page": page,
                        "query_string": ctx.query_string, "started": self._bench_started,
                        "wall_s": wall_s, "event": str(event),
                    }
                    with open(profile_dir / INDEX, "a") as index:
                        index.write(json.dumps(record) + "\n")

    runner._install_event_loop = install_event_loop
    runner._on_script_finished = on_script_finished


def read_index(profile_dir: Path) -> list[dict[str, Any]]:
    path = profile_dir / INDEX
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ summaries


def _is_project_code(file_path: str | None) -> bool:
    if not file_path:
        return False
    path = Path(file_path)
    try:
        relative = path.resolve().relative_to(REPO)
    except (ValueError, OSError):
        return False
    return relative.parts[0] in ("app", "core", "models")


def _module_of(file_path: str | None) -> str:
    """``.../site-packages/torch/nn/__init__.py`` -> ``torch.nn``: names what an import loads."""
    if not file_path:
        return "?"
    parts = Path(file_path).with_suffix("").parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1:]
            break
    else:
        try:
            parts = Path(file_path).resolve().with_suffix("").relative_to(REPO).parts
        except (ValueError, OSError):
            parts = parts[-2:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


# Decorator frames that say nothing of what is called (Streamlit wraps every element in metrics_util's
# wrapped_func): a call is named after the first frame below them.
_WRAPPERS = {"wrapped_func", "wrapper", "wrapped", "inner", "decorator", "__call__"}


def _label(frame) -> str:
    module = _module_of(frame.file_path)
    if frame.function == "<module>":
        return f"{module} (top level)" if _is_project_code(frame.file_path) else f"import {module}"
    return f"{module}.{frame.function}"


def _call_label(frame) -> str:
    """The label of a library call, looking through wrappers to the heaviest real callee."""
    named = frame
    for _ in range(8):
        if named.function not in _WRAPPERS:
            break
        real = [c for c in named.children if not c.is_synthetic and not _is_project_code(c.file_path)]
        if not real:
            break
        named = max(real, key=lambda c: c.time)
    return _label(named)


def summarize_session(session, top: int = 12) -> dict[str, Any]:
    """Where one script run's time went.

    - ``calls_from_project``: for each function of the project's code (app/, core/, models/; a page's top level
      is ``app.pages.adapt (top level)``), what it called outside the project (an import, a Streamlit element,
      plotly, SQLAlchemy, torch), summed over the run, less the time of project code that the call ran in turn
      (Streamlit running a page, a cache calling its function), which is charged to that code instead;
    - ``project_functions``: the project's own functions by total time (inclusive: they nest);
    - ``imports``: modules imported during the run (the outermost import of a chain), by total time.
    """
    from pyinstrument import processors

    root = session.root_frame()
    if root is None:
        return {"wall_s": round(session.duration, 3), "calls_from_project": [], "project_functions": [],
                "imports": []}
    root = processors.remove_importlib(root, options={})
    root = processors.aggregate_repeated_calls(root, options={})
    calls: dict[str, float] = {}
    functions: dict[str, float] = {}
    imports: dict[str, float] = {}

    def add(table: dict[str, float], key: str, seconds: float) -> None:
        table[key] = table.get(key, 0.0) + seconds

    def visit(frame, charged_to: str | None, inside_import: bool) -> float:
        """Walk ``frame``; returns the time of the outermost project frames at or below it."""
        if frame.is_synthetic:
            return sum(visit(child, charged_to, inside_import) for child in frame.children)
        if _is_project_code(frame.file_path):
            add(functions, _label(frame), frame.time)
            for child in frame.children:
                visit(child, _label(frame), inside_import)
            return frame.time
        starts_import = frame.function == "<module>" and not inside_import
        if starts_import:
            add(imports, _module_of(frame.file_path), frame.time)
        # Below a project function, only the first library frame is charged (its own time, less project code
        # it ran in turn); deeper library frames pass their project descendants up.
        nested_project = sum(
            visit(child, None, inside_import or starts_import) for child in frame.children
        )
        if charged_to is not None:
            add(calls, f"{charged_to} -> {_call_label(frame)}", frame.time - nested_project)
        return nested_project

    visit(root, None, False)

    def ranked(table: dict[str, float]) -> list[dict[str, Any]]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [{"what": k, "seconds": round(v, 3)} for k, v in rows]

    return {
        "wall_s": round(session.duration, 3),
        "calls_from_project": ranked(calls),
        "project_functions": ranked(functions),
        "imports": ranked(imports),
    }


def summarize_dir(profile_dir: Path, runs: list[int] | None = None, top: int = 12) -> list[dict[str, Any]]:
    """Summaries of the recorded script runs (all, or those numbered ``runs``), in order."""
    from pyinstrument.session import Session

    summaries = []
    for record in read_index(profile_dir):
        if runs is not None and record["run"] not in runs:
            continue
        session = Session.load(str(profile_dir / f"{record['run']}.pyisession"))
        summaries.append({**record, **summarize_session(session, top)})
    return summaries


def render_tree(profile_dir: Path, run: int) -> str:
    """pyinstrument's own call tree of one run, as text."""
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    session = Session.load(str(profile_dir / f"{run}.pyisession"))
    return ConsoleRenderer(unicode=False, color=False, short_mode=True).render(session)


def format_summary(summary: dict[str, Any], title: str | None = None) -> str:
    query = f"?{summary['query_string']}" if summary["query_string"] else ""
    first = (f"{title + ': ' if title else ''}script run {summary['run']} ({summary['page'] or 'main'}{query}), "
             f"{summary['wall_s']:.2f} s in the script thread")
    lines = [first]
    for heading, rows in (("calls out of the project's code (charged to the nearest project function)",
                           summary["calls_from_project"]),
                          ("modules imported during the run", summary["imports"]),
                          ("project functions, inclusive", summary["project_functions"])):
        lines.append(f"  {heading}:")
        lines.extend(f"    {row['seconds']:7.3f} s  {row['what']}" for row in rows)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile-dir", type=Path, help="serve with profiling, writing profiles here")
    parser.add_argument("--summarize", type=Path, metavar="DIR", help="print summaries of the profiles in DIR")
    parser.add_argument("--tree", type=int, metavar="RUN", help="with --summarize: print run RUN's call tree")
    parser.add_argument("streamlit_args", nargs=argparse.REMAINDER,
                        help="after --: what `streamlit run` takes (the script, then its options)")
    args = parser.parse_args()
    if args.summarize:
        if args.tree:
            print(render_tree(args.summarize, args.tree))
        for summary in summarize_dir(args.summarize):
            print(format_summary(summary, f"session {summary['session_id'][:8]}") + "\n")
        return 0
    if not args.profile_dir:
        parser.error("give --profile-dir DIR (to serve) or --summarize DIR")
    streamlit_args = [a for a in args.streamlit_args if a != "--"] or ["app/main.py"]
    sys.path.insert(0, str(REPO))
    install_profiler(args.profile_dir)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *streamlit_args]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
