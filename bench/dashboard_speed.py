"""The dashboard's speed as a user feels it: a real headless Chromium drives a real Streamlit server.

    python bench/dashboard_speed.py                                  # every figure, 3 tries each
    python bench/dashboard_speed.py --repeats 5 --out bench/results/dashboard_speed.json
    python bench/dashboard_speed.py --cases load-cold-omniglot reload-warm
    python bench/dashboard_speed.py --server-url http://127.0.0.1:8501 --stored-run 12   # a running server
    python bench/dashboard_speed.py --checkpoint-dir /tmp/ckpts       # other checkpoints than assets/checkpoints
    python bench/dashboard_speed.py --profile                         # and where a first load's seconds go
    python bench/dashboard_speed.py --list                            # the figures, their start and end events

Each figure is the median (and min/max) of ``--repeats`` tries, in seconds, from an action to the page being
ready. The script starts its own servers (a fresh ``streamlit run app/main.py`` per journey, so Streamlit's and
Python's caches start cold; a temporary SQLite run store; ``FEWSHOT_DEVICE=cpu``; the checkpoints of
``--checkpoint-dir`` only) and drives Debian's ``/usr/bin/chromium`` through the playwright wheel. It writes JSON
(``--out``) and prints a table with each target and whether its median meets it, the machine (CPU, cores, load
average at start and end), the git commit (and whether the tree had uncommitted changes) and the versions.
Timings on a busy machine are upper bounds.

Start: ``time.time()`` just before the Playwright call (``goto``, ``reload``, ``click``). Chromium is launched
once and is not counted; each first visit uses a new browser context (an empty HTTP cache, a new Streamlit
session); a server is answering ``/_stcore/health`` before it is visited (its start-up is in ``servers``).
End ("ready"): the browser's ``Date.now()`` when all of these began to hold, provided they then held without a
break for ``--settle-ms`` (Streamlit can look idle for a moment between two script runs); they are polled
every 50 ms in the page:

- Streamlit is idle: the app is mounted, no status widget (its "running" or "connecting" indicator), no element
  left over from the previous script run (``data-stale``), no placeholder of an element whose code or data is
  still loading (``stSkeleton``);
- every image in the main area has loaded (lazy ones excepted) and every plotly chart has been drawn;
- the figure's own elements: the Adapt page is interactive when its Run button is shown (disabled is fine:
  without an episode it is disabled by design); a Run is done when a run view's heading shows a run id that
  was not on the page before the click, with one metric per rule, and Run is enabled again; a stored run is
  open when its heading (with its id), one metric per rule and its Re-run button are shown; a Re-run is done
  when a run id that was not on the page before the click is mentioned in the main area, under a run view with
  one metric per rule.

For the figures with a result (Run, open, Re-run) the "shown" column is the earlier moment from which the
figure's own elements (fresh, not left over from the previous script run) and every picture of the query
gallery were on the page: what a user reads first. Charts may still be drawing then, and the script running.

Servers start with ``python -m app`` (``--launcher module``, the README's command: the engine is warmed up
before the server listens, and that start-up is in ``servers``) or ``streamlit run app/main.py``
(``--launcher streamlit``, the only way before app/__main__.py existed).

``--timeline`` records, for every wait, when each condition started and stopped holding, which says whether
the seconds went to the server (``script_running``) or to the browser (``placeholder``, ``chart_drawn``).

The tries are grouped in journeys, each on a fresh server, as a user would go: ``adapt-5way`` (first load,
reload, first and second Run), ``adapt-20way`` (first and second Run), ``stored-run`` (open a stored 20-way
run cold and warm, Re-run it twice) and ``no-omniglot`` (first load without the dataset). Without Omniglot
(``core.settings.omniglot_root``) the Run figures are skipped and the stored run is a synthetic
20-way upload episode. ``--list`` prints every figure's start and end.

Every CSS selector the script relies on is in SELECTORS below (the pages change; adjust them there): a
selector that does not show up fails the try with a message naming it (and a screenshot, kept with
``--keep-logs``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_OUT = REPO / "bench" / "results" / "dashboard_speed.json"
# The Run figures adapt with these two rules of the checkpoint (core.rules names).
RULES = ("alfa", "sgd")

# ------------------------------------------------------------------------------------------------ selectors
# Every selector in one place. Streamlit gives each element made with key=... the CSS class st-key-<key>.
SELECTORS: dict[str, str] = {
    # Streamlit's own state (streamlit 1.67)
    "app": "[data-testid='stApp']",
    "main": "[data-testid='stMain']",
    # Shown while a script runs (or the connection is down); once it fades out (-exit) the page is idle.
    "script_running": "[data-testid='stStatusWidget']:not(.StatusWidget-exit)",
    "placeholder": "[data-testid='stSkeleton']",  # an element whose code or data is still loading
    "stale": "[data-stale='true']",  # an element of the previous script run, not yet replaced
    "image": "[data-testid='stMain'] img:not([loading='lazy'])",
    # The run view's query gallery (app/gallery.py): one picture per query.
    "gallery_image": "[data-testid='stMain'] img.fs-main",
    "chart": "[data-testid='stPlotlyChart']",
    "chart_drawn": ".main-svg",  # inside a chart: plotly has drawn it
    # Adapt page (app/screens/adapt.py), by widget key
    "run_button": ".st-key-run button",
    "checkpoint": ".st-key-checkpoint input",  # its value is the chosen checkpoint's label
    "source_option": ".st-key-source [data-testid='stRadioOption']",
    "dataset_option": ".st-key-dataset [data-testid='stRadioOption']",
    "n_way": ".st-key-n_way input",
    "k_shot": ".st-key-k_shot input",
    "n_query": ".st-key-n_query input",
    "seed": ".st-key-seed input",
    "steps": ".st-key-steps input[type='range']",
    "rules": "[class*='st-key-rules_']",  # the key carries the checkpoint path
    "rule_tag": "[class*='st-key-rules_'] [data-tag]",  # one per chosen rule; aria-label is the rule's label
    "rule_input": "[class*='st-key-rules_'] input",
    # The run view (app/views.py: render_run), on the Adapt page after Run and on the Runs page
    "run_heading": "[data-testid='stHeading']",
    "result_metric": "[data-testid='stMetric']",
    # Runs page (app/screens/runs.py)
    "rerun_button": ".st-key-rerun_{run_id} button",
}
# Regular expressions over an element's text; the group is a run id.
PATTERNS: dict[str, str] = {
    "run_heading": r"^Run #(\d+)\b",  # the run view's heading
    "run_mention": r"\b[Rr]un #(\d+)",  # any mention in the main area: a re-run is done when a new id shows
}
# Option texts clicked on the Adapt page.
TEXTS: dict[str, str] = {"benchmark_source": "Benchmark episode", "omniglot_dataset": "Omniglot"}
# Runs page address of one run.
RUN_URL = "{url}/runs?run={run_id}"

# ------------------------------------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Figure:
    case: str
    journey: str
    starts: str
    ends: str
    target_s: float | None = None
    needs_omniglot: bool = False


# The Run button is the last control of the Adapt page; it is disabled while the episode is not ready (no data).
READY_ADAPT = "the Adapt page is interactive (Run button shown, page idle)"
READY_RESULT = "a run view with a new run id in its heading, one metric per rule, page idle"
FIGURES: list[Figure] = [
    Figure("load-cold-omniglot", "adapt-5way", "navigation to / in a new browser context, on a server that has "
           "served nothing yet (Omniglot reachable)", READY_ADAPT, 5.0, needs_omniglot=True),
    Figure("reload-warm", "adapt-5way", "page.reload() of the Adapt page just loaded (same server and browser "
           "context; a new Streamlit session)", READY_ADAPT, 2.0, needs_omniglot=True),
    Figure("run-5way-1shot-first", "adapt-5way", "click on Run, 5-way 1-shot Omniglot benchmark episode, ALFA "
           "and SGD, the session's and server's first run (no learner cached)", READY_RESULT, 2.0,
           needs_omniglot=True),
    Figure("run-5way-1shot-warm", "adapt-5way", "click on Run again in the same session, seed + 1 (a new "
           "episode; learners cached)", READY_RESULT, 2.0, needs_omniglot=True),
    Figure("run-20way-1shot-first", "adapt-20way", "click on Run, 20-way 1-shot, ALFA and SGD, on a fresh "
           "server after its first page load", READY_RESULT, needs_omniglot=True),
    Figure("run-20way-1shot-warm", "adapt-20way", "click on Run again in the same session, seed + 1",
           READY_RESULT, needs_omniglot=True),
    Figure("open-run-20way-cold", "stored-run", "navigation to /runs?run=<stored 20-way run> in a new browser "
           "context, on a server that has served nothing yet",
           "the run view of that run: heading with its id, one metric per rule, Re-run button, page idle"),
    Figure("open-run-20way", "stored-run", "the same navigation in another new browser context (a new "
           "session) on the now warm server", "as open-run-20way-cold", 1.5),
    Figure("open-run-20way-again", "stored-run", "the same navigation again in that browser context (its HTTP "
           "cache holds the page's code, as after clicking a run link in the Runs table), a new session",
           "as open-run-20way-cold", 1.5),
    Figure("rerun-20way-first", "stored-run", "click on 'Re-run this episode' in that page, the server's first "
           "adaptation (no learner cached)",
           "a new run id mentioned in the main area, a run view with one metric per rule, page idle"),
    Figure("rerun-20way-warm", "stored-run", "the stored run opened again and Re-run clicked again (learners "
           "cached)", "as rerun-20way-first"),
    Figure("load-cold-no-omniglot", "no-omniglot", "navigation to / in a new browser context, on a server that "
           "has served nothing yet, Omniglot not reachable ($FEWSHOT_OMNIGLOT_ROOT an empty folder)",
           READY_ADAPT, 5.0),
]
FIGURES.append(Figure(
    "streamlit-floor", "floor", "navigation to a one-line Streamlit page (a subheader and a metric, no dashboard "
    "code) in a new browser context", "its metric shown, page idle: what any Streamlit page costs on a first visit"))
FIGURE_BY_CASE = {f.case: f for f in FIGURES}
JOURNEYS = list(dict.fromkeys(f.journey for f in FIGURES))


class BenchError(RuntimeError):
    """A try could not be measured (a selector missing, the page not ready in time, the server down)."""


# ------------------------------------------------------------------------------------------------ waiting

# Polled in the page every POLL_MS. Returns false, or the time (Date.now()) since which every condition has held
# without a break for arg.settle_ms: Streamlit can look idle for a moment between two script runs.
READY_JS = """
(arg) => {
  const S = arg.selectors;
  const all = (css) => Array.from(document.querySelectorAll(css));
  const unmet = [];
  if (!document.querySelector(S.app)) unmet.push("app");
  for (const name of ["script_running", "stale"]) {
    if (document.querySelector(S[name])) unmet.push(name);
  }
  // Which elements are still placeholders: their key, else the kind of element that waits.
  const placeholders = all(S.placeholder).map((e) => {
    const box = e.closest("[data-testid='stElementContainer']") || e.parentElement;
    const key = box && [...box.classList].find((c) => c.startsWith("st-key-"));
    const inner = box && box.querySelector("[data-testid]:not([data-testid='stSkeleton'])");
    return key || (inner && inner.getAttribute("data-testid")) || (box && box.getAttribute("data-testid")) || "?";
  });
  if (placeholders.length) {
    const shown = [...new Set(placeholders)].slice(0, 4).join(" ");
    unmet.push(`placeholder (${placeholders.length}: ${shown})`);
  }
  const loading = all(S.image).filter((img) => !(img.complete && img.naturalWidth > 0)).length;
  if (loading) unmet.push(`image (${loading} not loaded)`);
  const undrawn = all(S.chart).filter((chart) => !chart.querySelector(S.chart_drawn)).length;
  if (undrawn) unmet.push(`chart_drawn (${undrawn} charts not drawn)`);
  const before = unmet.length;
  for (const need of arg.needs) {
    let found = all(need.css).filter((e) => !e.closest("[data-stale='true']"));
    if (need.enabled) {
      found = found.filter((e) => !e.disabled && e.getAttribute("aria-disabled") !== "true");
    }
    if (need.pattern) {
      found = found.filter((e) => {
        for (const m of (e.innerText || "").trim().matchAll(new RegExp(need.pattern, "gm"))) {
          const id = m[1] === undefined ? null : Number(m[1]);
          if (need.run_id !== null && id !== need.run_id) continue;
          if (need.not_run_ids.includes(id)) continue;
          return true;
        }
        return false;
      });
    }
    if (found.length < need.min_count) unmet.push(`${need.name} (${found.length} of ${need.min_count})`);
  }
  const states = (window.__dashboardSpeed = window.__dashboardSpeed || {});
  const state = (states[arg.token] = states[arg.token] ||
    { since: null, unmet: [], timeline: [], shown_since: null });
  const now = Date.now();
  // "Shown": the figure's own elements (not left over from the previous script run) and, where the page has a
  // query gallery, every one of its pictures loaded; charts may still be drawing and the script still running.
  const gallery = all(S.gallery_image).filter((img) => !img.closest("[data-stale='true']"));
  const galleryLoaded = gallery.every((img) => img.complete && img.naturalWidth > 0);
  const needsMet = unmet.length === before;
  const resultShown = arg.needs.length > 0 && needsMet && galleryLoaded;
  if (!resultShown) state.shown_since = null;
  else if (state.shown_since === null) state.shown_since = now;
  const key = unmet.join(", ");
  // What the page was waiting on, each time that changes (--timeline).
  if (!state.timeline.length || state.timeline[state.timeline.length - 1][1] !== key) {
    if (state.timeline.length < 500) state.timeline.push([now, key]);
  }
  state.unmet = unmet;
  if (unmet.length) {
    state.since = null;
    return false;
  }
  if (state.since === null) state.since = now;
  if (now - state.since < arg.settle_ms) return false;
  return { ready: state.since, shown: state.shown_since === null ? state.since : state.shown_since };
}
"""
POLL_MS = 50


@dataclass
class Need:
    """A condition on the page: at least ``min_count`` elements of SELECTORS[name] (enabled, matching the
    pattern PATTERNS[pattern] with the given run id or none of the excluded ones)."""

    name: str
    min_count: int = 1
    enabled: bool = False
    pattern: str | None = None
    run_id: int | None = None
    not_run_ids: tuple[int, ...] = ()
    format_args: dict[str, Any] = field(default_factory=dict)

    def to_js(self) -> dict[str, Any]:
        return {
            "name": self.name, "css": SELECTORS[self.name].format(**self.format_args), "min_count": self.min_count,
            "enabled": self.enabled, "pattern": PATTERNS[self.pattern] if self.pattern else None,
            "run_id": self.run_id, "not_run_ids": list(self.not_run_ids),
        }


class Driver:
    """One browser page of the benchmark, with the waits and interactions the journeys use."""

    def __init__(self, page, timeout_s: float, settle_ms: int, failure_dir: Path,
                 timeline: list[dict[str, Any]] | None = None) -> None:
        self.page = page
        self.timeline = timeline
        self.timeout_s = timeout_s
        self.settle_ms = settle_ms
        self.failure_dir = failure_dir
        self._tokens = 0
        self.last_shown: float | None = None  # when the last wait's own elements were first all shown

    def screenshot_failure(self) -> None:
        """What the page showed when a wait failed (kept with --keep-logs)."""
        try:
            number = len(list(self.failure_dir.glob("failure-*.png"))) + 1
            self.page.screenshot(path=str(self.failure_dir / f"failure-{number}.png"), full_page=True)
        except Exception:  # noqa: BLE001, S110 - the error message matters more than the picture
            pass

    def wait_ready(self, needs: list[Need], what: str, started: float | None = None) -> float:
        """Wait until the page is idle and every need holds, steadily for settle_ms; returns the wall-clock time
        (seconds since the epoch, the browser's clock) since which all that has held."""
        self._tokens += 1
        token = f"w{self._tokens}"
        argument = {"selectors": SELECTORS, "needs": [n.to_js() for n in needs], "settle_ms": self.settle_ms,
                    "token": token}
        try:
            handle = self.page.wait_for_function(READY_JS, arg=argument, polling=POLL_MS,
                                                 timeout=self.timeout_s * 1000)
        except Exception as error:  # noqa: BLE001 - playwright's TimeoutError, or the page closed
            unmet = self._unmet(token)
            self.screenshot_failure()
            raise BenchError(
                f"{what}: not ready after {self.timeout_s:.0f} s on {self.page.url}; unmet: {unmet or 'unknown'} "
                f"({self._describe(unmet)}); adjust SELECTORS in bench/dashboard_speed.py if the page changed "
                f"[{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}]"
            ) from None
        value = handle.json_value()
        ready = float(value["ready"]) / 1000
        self.last_shown = float(value["shown"]) / 1000
        if self.timeline is not None:
            steps = self.page.evaluate("(token) => window.__dashboardSpeed[token].timeline", token)
            origin = started if started is not None else steps[0][0] / 1000
            self.timeline.append({"wait": what, "ready_after_s": round(ready - origin, 3), "changes": [
                [round(t / 1000 - origin, 3), unmet or "ready"] for t, unmet in steps]})
        return ready

    def _unmet(self, token: str) -> list[str]:
        try:
            return list(self.page.evaluate(
                "(token) => ((window.__dashboardSpeed || {})[token] || {unmet: []}).unmet", token))
        except Exception:  # noqa: BLE001 - only for the message
            return []

    @staticmethod
    def _describe(unmet: list[str]) -> str:
        names = [u.split(" ", 1)[0] for u in unmet]
        return "; ".join(f"{n} = {SELECTORS[n]!r}" for n in names if n in SELECTORS)

    def find(self, name: str, text: str | None = None, **format_args: Any):
        """The first element of SELECTORS[name] (with ``text`` in it); fails naming the selector."""
        css = SELECTORS[name].format(**format_args)
        locator = self.page.locator(css)
        if text is not None:
            locator = locator.filter(has_text=text)
        locator = locator.first
        try:
            locator.wait_for(state="attached", timeout=15_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError
            self.screenshot_failure()
            raise BenchError(
                f"selector {name!r} ({css}{f', with text {text!r}' if text else ''}) not found on {self.page.url}; "
                f"adjust SELECTORS/TEXTS in bench/dashboard_speed.py"
            ) from None
        return locator

    def settle(self, what: str, needs: list[Need] | None = None) -> None:
        self.wait_ready(needs or [Need("run_button", enabled=True)], what)

    def run_ids_shown(self) -> set[int]:
        text = self.page.locator(SELECTORS["main"]).first.inner_text() if self.page.locator(
            SELECTORS["main"]).count() else ""
        return {int(m) for m in re.findall(PATTERNS["run_mention"], text)}

    # Adapt page interactions (untimed)

    def choose_option(self, name: str, text: str) -> None:
        option = self.find(name, text)
        if option.get_attribute("data-selected") != "true":
            option.click()
            self.settle(f"after choosing {text!r}")

    def set_number(self, name: str, value: int) -> None:
        box = self.find(name)
        if box.input_value() != str(value):
            box.fill(str(value))
            box.press("Enter")
            self.settle(f"after setting {name} to {value}")
        shown = self.find(name).input_value()
        if shown != str(value):
            raise BenchError(f"{name} ({SELECTORS[name]}) shows {shown!r} after typing {value}: the page refused it")

    def choose_rules(self, labels: list[str]) -> None:
        """Make the chosen rules exactly ``labels`` (the checkpoint's labels of RULES)."""
        self.find("rules")
        chosen = [tag.get_attribute("aria-label") for tag in self.page.locator(SELECTORS["rule_tag"]).all()]
        for label in chosen:
            if label not in labels:
                self.page.locator(SELECTORS["rules"]).get_by_role("button", name=f"Remove {label}").click()
                self.settle(f"after removing rule {label!r}")
        for label in labels:
            if label not in chosen:
                box = self.find("rule_input")
                box.focus()
                box.press_sequentially(label, delay=20)
                self.page.get_by_role("option", name=label, exact=True).first.click()
                box.press("Escape")
                self.settle(f"after adding rule {label!r}")
        final = [tag.get_attribute("aria-label") for tag in self.page.locator(SELECTORS["rule_tag"]).all()]
        if sorted(final) != sorted(labels):
            raise BenchError(f"rules ({SELECTORS['rule_tag']}) show {final}, wanted {labels}")

    def settings(self) -> dict[str, Any]:
        """What the Adapt page is set to, for the report."""
        values: dict[str, Any] = {}
        for name in ("n_way", "k_shot", "n_query", "seed"):
            values[name] = self.find(name).input_value()
        values["steps"] = self.find("steps").input_value()
        values["rules"] = [t.get_attribute("aria-label") for t in self.page.locator(SELECTORS["rule_tag"]).all()]
        values["checkpoint"] = self.find("checkpoint").input_value()
        return values


# ------------------------------------------------------------------------------------------------ server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# How a server is started: "module" is the README's `python -m app` (the engine is warmed up before the server
# listens, and its start-up time is in the report's "servers"); "streamlit" is the bare `streamlit run app/main.py`.
LAUNCHERS = ("module", "streamlit")


def default_launcher() -> str:
    return "module" if (REPO / "app" / "__main__.py").is_file() else "streamlit"


class Server:
    """The dashboard in its own process (optionally under bench/profile_dashboard.py)."""

    launcher = "streamlit"

    def __init__(self, env: dict[str, str], log_path: Path, profile_dir: Path | None = None,
                 script: Path | None = None) -> None:
        self.env = env
        self.script = script  # another Streamlit script than the dashboard (the floor figure)
        self.log_path = log_path
        self.profile_dir = profile_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.ready_s: float | None = None

    def __enter__(self) -> Self:
        options = ["--server.headless", "true", "--server.port", str(self.port), "--browser.gatherUsageStats",
                   "false", "--server.fileWatcherType", "none"]
        if self.script is not None:
            command = [sys.executable, "-m", "streamlit", "run", str(self.script), *options]
        elif self.profile_dir is None and self.launcher == "module":
            command = [sys.executable, "-m", "app", *options]
        elif self.profile_dir is None:
            command = [sys.executable, "-m", "streamlit", "run", "app/main.py", *options]
        else:
            command = [sys.executable, str(REPO / "bench" / "profile_dashboard.py"), "--profile-dir",
                       str(self.profile_dir), "--", "app/main.py", *options]
        self._log = open(self.log_path, "wb")  # closed in __exit__
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as answer:
                    if answer.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise BenchError(f"streamlit did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        self.ready_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ------------------------------------------------------------------------------------------------ set-up


@dataclass
class Setup:
    """What every journey shares: folders, checkpoint, data, the seeded run store, the browser."""

    args: argparse.Namespace
    workdir: Path
    checkpoint_dir: Path
    checkpoint_path: Path | None = None
    checkpoint_name: str | None = None
    rule_labels: list[str] = field(default_factory=list)
    omniglot_root: Path | None = None
    stored_run_db: Path | None = None
    stored_run_id: int | None = None
    stored_run: dict[str, Any] = field(default_factory=dict)
    browser: Any = None
    servers: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] | None = None  # the current journey's, with --timeline
    contexts: list[Any] = field(default_factory=list)

    def close_pages(self) -> None:
        for context in self.contexts:
            try:
                context.close()
            except Exception:  # noqa: BLE001, S110 - already closed with its server's failure
                pass
        self.contexts.clear()

    def server_env(self, database: Path, omniglot: bool) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "FEWSHOT_DATABASE_URL": f"sqlite:///{database}",
            "FEWSHOT_DEVICE": "cpu",
            # Only the benchmark's checkpoints (not runs/ of whoever runs it).
            "FEWSHOT_DEFAULT_CHECKPOINT_DIRS": str(self.checkpoint_dir),
            "FEWSHOT_CHECKPOINT_DIRS": "",
        })
        if omniglot:
            env["FEWSHOT_OMNIGLOT_ROOT"] = str(self.omniglot_root)
        else:
            # The variable wins over ../shared/datasets/omniglot and data/omniglot (core.data.omniglot).
            empty = self.workdir / "no-omniglot"
            empty.mkdir(exist_ok=True)
            env["FEWSHOT_OMNIGLOT_ROOT"] = str(empty)
        return env

    def start_server(self, label: str, omniglot: bool, stored_run: bool = False,
                     profile_dir: Path | None = None) -> Server:
        number = len(self.servers) + 1
        database = self.workdir / f"server-{number}.sqlite3"
        if stored_run and self.stored_run_db is not None:
            shutil.copy(self.stored_run_db, database)
        server = Server(self.server_env(database, omniglot), self.workdir / f"server-{number}-{label}.log",
                        profile_dir)
        server.__enter__()
        self.servers.append({"label": label, "log": str(server.log_path), "ready_s": round(server.ready_s, 3)})
        return server

    def new_page(self) -> Driver:
        """A page in a new browser context: its own cookies, cache and websocket, so a new Streamlit session."""
        context = self.browser.new_context(viewport=VIEWPORT)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(self.args.timeout * 1000)
        return Driver(page, self.args.timeout, self.args.settle_ms, self.workdir, self.timeline)


def find_checkpoint(checkpoint_dir: Path) -> tuple[Path, str, list[str]]:
    """The checkpoint the Adapt page starts with (the folder's manifest default first) and the labels of the
    RULES it supports."""
    from core.checkpoint import find_checkpoints, supported_rules
    from core.rules import rule_label

    for entry in find_checkpoints([checkpoint_dir]):
        if entry.metadata is not None and entry.metadata.is_image_classifier:
            rules = [r for r in RULES if r in supported_rules(entry.metadata)]
            return entry.path, entry.name, [rule_label(r) for r in rules]
    raise BenchError(f"no usable image-classification checkpoint in {checkpoint_dir}")


def find_omniglot() -> Path | None:
    from core.data.omniglot import list_alphabets
    from core.settings import omniglot_root

    root = omniglot_root()
    try:
        return root if list_alphabets(root) else None
    except OSError:
        return None


def seed_stored_run(setup: Setup, database: Path) -> None:
    """A 20-way 1-shot run with ALFA and SGD, stored the way the Adapt page stores one (core.runs.run_rules):
    a real Omniglot episode from the checkpoint's held-out alphabets, else a synthetic upload episode."""
    from core.checkpoint import read_metadata, supported_rules
    from core.runs import run_rules
    from core.store import Store

    metadata = read_metadata(setup.checkpoint_path)
    spec = metadata.image
    rules = [r for r in RULES if r in supported_rules(metadata)]
    steps = metadata.inner_steps.eval
    n_way, n_query = 20, 3
    started = time.perf_counter()
    if setup.omniglot_root is not None:
        from core.data.omniglot import OmniglotImageSet, list_alphabets
        from core.data.sampler import EpisodeSampler
        from core.data.uploads import items_from_benchmark

        available = list_alphabets(setup.omniglot_root)
        held_out = [a for a in metadata.heldout_classes if a in available]
        image_set = OmniglotImageSet(setup.omniglot_root, alphabets=held_out or None, spec=spec)
        if len(image_set.class_names) < n_way:
            image_set = OmniglotImageSet(setup.omniglot_root, alphabets=None, spec=spec)
        episode = EpisodeSampler(image_set, n_way, 1, n_query, seed=0).episode(0)
        items = items_from_benchmark(episode)
        source = {"source": "benchmark", "dataset": "omniglot", "seed": 0,
                  "extra_config": {"alphabets": held_out, "dataset_root": str(setup.omniglot_root)}}
        kind = f"Omniglot ({', '.join(held_out) or 'all alphabets'})"
    else:
        from core.data.uploads import episode_from_uploads

        classes = [(f"stroke {c + 1:02d}", [(f"stroke-{c + 1:02d}-0.png", _stroke_png(c, 0))]) for c in range(n_way)]
        queries = [(f"query-{c + 1:02d}-{q}.png", _stroke_png(c, q + 1), f"stroke {c + 1:02d}")
                   for c in range(n_way) for q in range(n_query)]
        episode, items = episode_from_uploads(classes, queries, spec)
        source = {"source": "upload", "dataset": "upload", "seed": None, "extra_config": None}
        kind = "synthetic upload (random strokes)"
    with Store(f"sqlite:///{database}") as store:
        run_id = run_rules(
            store=store, checkpoint_path=setup.checkpoint_path, rules=rules, episode=episode, items=items,
            steps=steps, device="cpu", source=source["source"], dataset=source["dataset"], split=None,
            seed=source["seed"], extra_config=source["extra_config"],
        )
    setup.stored_run_db = database
    setup.stored_run_id = run_id
    setup.stored_run = {"run_id": run_id, "episode": kind, "n_way": n_way, "k_shot": 1, "n_query": n_query,
                        "rules": rules, "steps": steps, "seconds_to_seed": round(time.perf_counter() - started, 2)}


def _stroke_png(class_index: int, variant: int) -> bytes:
    """A few random dark strokes on white, the same per class (its seed) up to a small per-variant jitter."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    shape = np.random.default_rng(class_index).integers(4, 36, (4, 2))
    jitter = np.random.default_rng(1000 + 31 * class_index + variant).integers(-2, 3, (4, 2))
    points = [tuple(int(v) for v in p) for p in shape + jitter]
    image = Image.new("L", (40, 40), 255)
    ImageDraw.Draw(image).line(points, fill=0, width=3)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ journeys

# (figure, seconds until ready, seconds until its result was first shown, where the figure has one)
Emit = Callable[..., None]


def _elapsed(started: float, ready_since: float) -> float:
    return max(0.0, ready_since - started)


def load_adapt(driver: Driver, url: str) -> float:
    started = time.time()
    driver.page.goto(url, wait_until="commit")
    return _elapsed(started, driver.wait_ready([Need("run_button")], f"loading {url}", started))


def reload_adapt(driver: Driver) -> float:
    started = time.time()
    driver.page.reload(wait_until="commit")
    return _elapsed(started, driver.wait_ready([Need("run_button")], "reloading the Adapt page", started))


def prepare_run(driver: Driver, setup: Setup, n_way: int) -> dict[str, Any]:
    driver.choose_option("source_option", TEXTS["benchmark_source"])
    driver.choose_option("dataset_option", TEXTS["omniglot_dataset"])
    driver.set_number("n_way", n_way)
    driver.set_number("k_shot", 1)
    driver.choose_rules(setup.rule_labels)
    return driver.settings()


def click_run(driver: Driver, n_rules: int) -> tuple[float, float]:
    known = tuple(sorted(driver.run_ids_shown()))
    button = driver.find("run_button")
    started = time.time()
    button.click()
    ready = driver.wait_ready(
        [Need("run_heading", pattern="run_heading", not_run_ids=known), Need("result_metric", min_count=n_rules),
         Need("run_button", enabled=True)],
        "Run -> result", started,
    )
    return _elapsed(started, ready), _elapsed(started, driver.last_shown)


def next_seed(driver: Driver) -> None:
    driver.set_number("seed", int(driver.find("seed").input_value()) + 1)


def open_run(driver: Driver, url: str, run_id: int, n_rules: int) -> tuple[float, float]:
    address = RUN_URL.format(url=url, run_id=run_id)
    started = time.time()
    driver.page.goto(address, wait_until="commit")
    ready = driver.wait_ready(
        [Need("run_heading", pattern="run_heading", run_id=run_id), Need("result_metric", min_count=n_rules),
         Need("rerun_button", format_args={"run_id": run_id})],
        f"opening {address}", started,
    )
    return _elapsed(started, ready), _elapsed(started, driver.last_shown)


def click_rerun(driver: Driver, run_id: int, n_rules: int) -> tuple[float, float]:
    known = tuple(sorted(driver.run_ids_shown()))
    button = driver.find("rerun_button", run_id=run_id)
    started = time.time()
    button.click()
    ready = driver.wait_ready(
        [Need("main", pattern="run_mention", not_run_ids=known), Need("run_heading", pattern="run_heading"),
         Need("result_metric", min_count=n_rules)],
        "Re-run -> new run", started,
    )
    return _elapsed(started, ready), _elapsed(started, driver.last_shown)


def journey_adapt(setup: Setup, wanted: set[str], emit: Emit, n_way: int, url: str | None) -> dict[str, Any]:
    """A fresh server: first load, reload, then Run twice (5-way also emits the load figures)."""
    first, warm = f"run-{n_way}way-1shot-first", f"run-{n_way}way-1shot-warm"
    server = None if url else setup.start_server(f"adapt-{n_way}way", omniglot=True)
    try:
        base = url or server.url
        driver = setup.new_page()
        seconds = load_adapt(driver, base)
        if n_way == 5:
            emit("load-cold-omniglot", seconds)
            if "reload-warm" in wanted:
                emit("reload-warm", reload_adapt(driver))
        if not wanted & {first, warm}:
            return {}
        settings = prepare_run(driver, setup, n_way)
        emit(first, *click_run(driver, len(setup.rule_labels)))
        if warm in wanted:
            next_seed(driver)
            emit(warm, *click_run(driver, len(setup.rule_labels)))
        return {"settings": settings}
    finally:
        setup.close_pages()
        if server is not None:
            server.__exit__(None, None, None)


def journey_stored_run(setup: Setup, wanted: set[str], emit: Emit, url: str | None) -> dict[str, Any]:
    server = None if url else setup.start_server("stored-run", omniglot=setup.omniglot_root is not None,
                                                 stored_run=True)
    try:
        base = url or server.url
        run_id, n_rules = setup.stored_run_id, len(setup.stored_run.get("rules") or setup.rule_labels)
        cold = setup.new_page()
        emit("open-run-20way-cold", *open_run(cold, base, run_id, n_rules))
        cold.page.context.close()  # the warm visit is a new session
        if not wanted - {"open-run-20way-cold"}:
            return {}
        driver = setup.new_page()
        emit("open-run-20way", *open_run(driver, base, run_id, n_rules))
        if "open-run-20way-again" in wanted:
            emit("open-run-20way-again", *open_run(driver, base, run_id, n_rules))
        if not wanted & {"rerun-20way-first", "rerun-20way-warm"}:
            return {}
        emit("rerun-20way-first", *click_rerun(driver, run_id, n_rules))
        if "rerun-20way-warm" in wanted:
            open_run(driver, base, run_id, n_rules)
            emit("rerun-20way-warm", *click_rerun(driver, run_id, n_rules))
        return {}
    finally:
        setup.close_pages()
        if server is not None:
            server.__exit__(None, None, None)


def journey_no_omniglot(setup: Setup, wanted: set[str], emit: Emit) -> dict[str, Any]:
    server = setup.start_server("no-omniglot", omniglot=False)
    try:
        driver = setup.new_page()
        emit("load-cold-no-omniglot", load_adapt(driver, server.url))
        return {}
    finally:
        setup.close_pages()
        server.__exit__(None, None, None)


FLOOR_SCRIPT = """import streamlit as st
st.subheader("Run #1")
st.metric("ALFA accuracy", "90.0%")
"""


def journey_floor(setup: Setup, wanted: set[str], emit: Emit) -> dict[str, Any]:
    """Streamlit's own cost of a first visit: a page with nothing but a subheader and a metric."""
    script = setup.workdir / "floor.py"
    script.write_text(FLOOR_SCRIPT)
    with Server(setup.server_env(setup.workdir / "floor.sqlite3", omniglot=False),
                setup.workdir / "server-floor.log", script=script) as server:
        try:
            driver = setup.new_page()
            started = time.time()
            driver.page.goto(server.url, wait_until="commit")
            emit("streamlit-floor", _elapsed(started, driver.wait_ready([Need("result_metric")], "the floor page",
                                                                       started)))
        finally:
            setup.close_pages()
    return {}


def run_journey(name: str, setup: Setup, wanted: set[str], emit: Emit) -> dict[str, Any]:
    url = setup.args.server_url
    if name == "adapt-5way":
        return journey_adapt(setup, wanted, emit, 5, url)
    if name == "adapt-20way":
        return journey_adapt(setup, wanted, emit, 20, url)
    if name == "stored-run":
        return journey_stored_run(setup, wanted, emit, url)
    if name == "floor":
        return journey_floor(setup, wanted, emit)
    return journey_no_omniglot(setup, wanted, emit)


# ------------------------------------------------------------------------------------------------ profile


RESOURCES_JS = """
(top) => performance.getEntriesByType("resource")
  .map((r) => ({name: r.name.replace(location.origin, ""), start_ms: r.startTime, duration_ms: r.duration,
                kb: (r.encodedBodySize || r.transferSize || 0) / 1024}))
  .sort((a, b) => b.kb - a.kb).slice(0, top)
"""


def _profiled_phase(setup: Setup, title: str, measure: Callable[[Driver], float]) -> dict[str, Any]:
    timeline: list[dict[str, Any]] = []
    driver = setup.new_page()
    driver.timeline = timeline
    seconds = measure(driver)
    downloads = driver.page.evaluate(RESOURCES_JS, 8)
    driver.page.context.close()
    return {"phase": title, "browser_seconds": round(seconds, 3),
            "timeline": timeline[-1]["changes"] if timeline else [],
            "largest_downloads": [{k: (round(v) if isinstance(v, float) else v) for k, v in d.items()}
                                  for d in downloads]}


def profile_first_load_and_stored_run(setup: Setup) -> dict[str, Any]:
    """A server under bench/profile_dashboard.py: a first load of the Adapt page, then the stored run opened
    in a new session; returns where each one's script run spent its time (and the browser-side figures)."""
    sys.path.insert(0, str(REPO / "bench"))
    import profile_dashboard

    # A new folder each time (under --profile-dir, else in the work folder, which is removed at the end).
    profile_dir = (setup.args.profile_dir or setup.workdir) / time.strftime("profile-%Y%m%d-%H%M%S")
    omniglot = setup.omniglot_root is not None
    server = setup.start_server("profiled", omniglot=omniglot, stored_run=setup.stored_run_id is not None,
                                profile_dir=profile_dir)
    phases: list[dict[str, Any]] = []
    runs_after_load = 0
    try:
        phases.append(_profiled_phase(setup, "first load of the Adapt page" + ("" if omniglot else " (no Omniglot)"),
                                      lambda driver: load_adapt(driver, server.url)))
        time.sleep(1)  # the index line is written when the script run ends
        runs_after_load = len(profile_dashboard.read_index(profile_dir))
        if setup.stored_run_id is not None:
            n_rules = len(setup.stored_run.get("rules") or setup.rule_labels)
            phases.append(_profiled_phase(
                setup, f"opening stored run #{setup.stored_run_id} (warm server, new session)",
                lambda driver: open_run(driver, server.url, setup.stored_run_id, n_rules)))
            time.sleep(1)
    finally:
        server.__exit__(None, None, None)
    summaries = profile_dashboard.summarize_dir(profile_dir, top=setup.args.profile_top)
    for index, phase in enumerate(phases):
        phase["script_runs"] = summaries[:runs_after_load] if index == 0 else summaries[runs_after_load:]
    return {"profile_dir": str(profile_dir), "kept": setup.args.profile_dir is not None, "phases": phases}


def print_profile(report: dict[str, Any]) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import profile_dashboard

    kept = f"files in {report['profile_dir']}" if report.get("kept") else "give --profile-dir to keep the files"
    print(f"\nProfile (pyinstrument, 1 ms samples; {kept}; read proportions: the profiler slows Python down):")
    for phase in report["phases"]:
        script_seconds = sum(run["wall_s"] for run in phase["script_runs"])
        print(f"\n== {phase['phase']}: {phase['browser_seconds']:.2f} s in the browser, "
              f"{script_seconds:.2f} s in {len(phase['script_runs'])} script run(s); the rest is the browser, "
              f"the connection and Streamlit outside the script")
        for run in phase["script_runs"]:
            print(profile_dashboard.format_summary(run))
        if phase.get("largest_downloads"):
            print("  largest downloads of the page (a new browser context has an empty cache; ms from navigation "
                  "start, duration includes queueing):")
            for item in phase["largest_downloads"]:
                print(f"    {item['duration_ms']:7.0f} ms  starts {item['start_ms']:6.0f} ms  {item['kb']:7.0f} kB  "
                      f"{item['name']}")
        if phase.get("timeline"):
            print("  what the page waited on (seconds from the action):")
            for at, unmet in phase["timeline"]:
                print(f"    {at:7.2f} s  {unmet}")


# ------------------------------------------------------------------------------------------------ report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return package_metadata.version(package)
    except package_metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_changes": changed}


def machine() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "platform": platform.platform(), "python": platform.python_version()}


def figure_rows(figures: list[Figure], samples: dict[str, list[float]], errors: dict[str, str],
                skipped: dict[str, str], shown: dict[str, list[float]] | None = None) -> list[dict[str, Any]]:
    rows = []
    for figure in figures:
        values = samples.get(figure.case, [])
        row: dict[str, Any] = {
            "case": figure.case, "journey": figure.journey, "starts": figure.starts, "ends": figure.ends,
            "seconds": [round(v, 3) for v in values],
            "median_s": round(statistics.median(values), 3) if values else None,
            "min_s": round(min(values), 3) if values else None,
            "max_s": round(max(values), 3) if values else None,
            "target_s": figure.target_s,
            "met": None if figure.target_s is None or not values else statistics.median(values) <= figure.target_s,
        }
        shown_values = (shown or {}).get(figure.case, [])
        if shown_values:
            # The run view's heading, metrics and query pictures, before the charts are drawn and the page idles.
            row["shown_seconds"] = [round(v, 3) for v in shown_values]
            row["shown_median_s"] = round(statistics.median(shown_values), 3)
        if figure.case in errors:
            row["error"] = errors[figure.case]
        if figure.case in skipped:
            row["skipped"] = skipped[figure.case]
        rows.append(row)
    return rows


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nDashboard speed ({report['repeats']} tries each; median, min, max in seconds) on {m['cpu_model']}, "
          f"{m['usable_cores']} of {m['cores']} cores, load average {m['load_average_at_start']} at start and "
          f"{m.get('load_average_at_end')} at end; commit {str(report['git']['commit'])[:12]}"
          f"{' + uncommitted changes' if report['git']['uncommitted_changes'] else ''}; streamlit "
          f"{report['versions']['streamlit']}, torch {report['versions']['torch']}, checkpoint "
          f"{report['settings']['checkpoint']}")
    header = f"{'figure':24} {'median':>7} {'min':>7} {'max':>7} {'shown':>7} {'target':>8}  verdict"
    print(header)
    print("-" * len(header))
    for row in report["figures"]:
        target = "-" if row["target_s"] is None else f"<= {row['target_s']:g}"
        if row.get("skipped"):
            print(f"{row['case']:24} {'':>7} {'':>7} {'':>7} {'':>7} {target:>8}  skipped: {row['skipped']}")
            continue
        if row["median_s"] is None:
            print(f"{row['case']:24} {'':>7} {'':>7} {'':>7} {'':>7} {target:>8}  error: {row.get('error', '?')}")
            continue
        verdict = "-" if row["met"] is None else ("met" if row["met"] else "MISSED")
        if row.get("error"):
            verdict += f" (some tries failed: {row['error']})"
        shown = f"{row['shown_median_s']:7.2f}" if row.get("shown_median_s") is not None else f"{'':>7}"
        print(f"{row['case']:24} {row['median_s']:7.2f} {row['min_s']:7.2f} {row['max_s']:7.2f} {shown} {target:>8}  "
              f"{verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=[f.case for f in FIGURES], metavar="CASE",
                        help="figures to measure (default: all; --list names them)")
    parser.add_argument("--repeats", type=int, default=3, help="tries per figure (default 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    parser.add_argument("--server-url", help="measure this running server instead of starting fresh ones; "
                        "'cold' figures are then only as cold as that server; no-omniglot is skipped")
    parser.add_argument("--stored-run", type=int, help="with --server-url: the id of a stored 20-way run to open "
                        "and re-run (the script seeds its own servers' stores)")
    parser.add_argument("--checkpoint-dir", type=Path, default=REPO / "assets" / "checkpoints",
                        help="the only checkpoint folder the servers see (default assets/checkpoints); the Adapt "
                        "page starts with its manifest default")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for any one page state")
    parser.add_argument("--settle-ms", type=int, default=500,
                        help="a page counts as ready once its conditions have held this long without a break; the "
                        "figure ends when they started to hold (default 500)")
    parser.add_argument("--profile", action="store_true", help="also profile a first load and the opening of "
                        "the stored run (needs pip install pyinstrument) and print where the time goes")
    parser.add_argument("--profile-dir", type=Path, help="keep the profiles here (default: a temporary folder)")
    parser.add_argument("--profile-top", type=int, default=12, help="rows per profile table")
    parser.add_argument("--keep-logs", type=Path, help="copy the servers' logs (and screenshots of failed waits) "
                        "into this folder")
    parser.add_argument("--timeline", action="store_true", help="record in the report, for every wait, when "
                        "each readiness condition started and stopped holding (seconds from the action)")
    parser.add_argument("--list", action="store_true", help="print the figures and exit")
    parser.add_argument("--launcher", choices=LAUNCHERS, default=default_launcher(),
                        help="start servers with `python -m app` (module: warmed up before it listens; the "
                             "default where app/__main__.py exists) or with `streamlit run app/main.py`")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.server_url:
        args.server_url = args.server_url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for f in FIGURES:
            target = "" if f.target_s is None else f" (target <= {f.target_s:g} s)"
            print(f"{f.case} [{f.journey}]{target}\n  from: {f.starts}\n  to:   {f.ends}")
        return 0
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed (pip install -r requirements-dev.txt)", file=sys.stderr)
        return 2
    from core.settings import chromium_path

    chromium = chromium_path()
    if not chromium.is_file():
        print(f"{chromium} is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2

    wanted = set(args.cases or [f.case for f in FIGURES])
    figures = [f for f in FIGURES if f.case in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="dashboard-speed-"))
    Server.launcher = args.launcher
    setup = Setup(args=args, workdir=workdir, checkpoint_dir=args.checkpoint_dir.resolve())
    report: dict[str, Any] = {"benchmark": "dashboard_speed", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "machine": machine(), "git": _git(), "repeats": args.repeats}
    samples: dict[str, list[float]] = {}
    shown_samples: dict[str, list[float]] = {}  # figures with a result: until it was first shown
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    journeys_done: list[dict[str, Any]] = []
    try:
        setup.checkpoint_path, setup.checkpoint_name, setup.rule_labels = find_checkpoint(setup.checkpoint_dir)
        setup.omniglot_root = find_omniglot()
        for figure in figures:
            if figure.needs_omniglot and setup.omniglot_root is None:
                skipped[figure.case] = "Omniglot not found (core.settings.omniglot_root)"
            elif args.server_url and figure.journey == "no-omniglot":
                skipped[figure.case] = "needs a server of its own (not --server-url)"
            elif args.server_url and figure.journey == "stored-run" and args.stored_run is None:
                skipped[figure.case] = "with --server-url, give --stored-run ID"
        active = [f for f in figures if f.case not in skipped]
        journeys = [j for j in JOURNEYS if any(f.journey == j for f in active)]
        if "stored-run" in journeys or (args.profile and not args.server_url):
            if args.server_url:
                setup.stored_run_id = args.stored_run
                setup.stored_run = {"run_id": args.stored_run, "episode": "given by --stored-run"}
            else:
                print("seeding the stored 20-way run...", flush=True)
                seed_stored_run(setup, workdir / "stored-run.sqlite3")

        def emit_for(journey_record: dict[str, Any]) -> Emit:
            def emit(case: str, seconds: float, shown: float | None = None) -> None:
                if case in wanted and case not in skipped:
                    samples.setdefault(case, []).append(seconds)
                    journey_record["figures"][case] = round(seconds, 3)
                    if shown is not None:
                        shown_samples.setdefault(case, []).append(shown)
                        journey_record.setdefault("shown", {})[case] = round(shown, 3)
                    extra = "" if shown is None else f" (result shown after {shown:.2f} s)"
                    print(f"  {case}: {seconds:.2f} s{extra}", flush=True)
            return emit

        with sync_playwright() as playwright:
            setup.browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            report["versions"] = {"streamlit": _version("streamlit"), "torch": _version("torch"),
                                  "playwright": _version("playwright"), "chromium": setup.browser.version,
                                  "python": platform.python_version()}
            for repeat in range(1, args.repeats + 1):
                for journey in journeys:
                    journey_wanted = {f.case for f in active if f.journey == journey}
                    record: dict[str, Any] = {"journey": journey, "repeat": repeat, "figures": {}}
                    setup.timeline = [] if args.timeline else None
                    print(f"[{repeat}/{args.repeats}] {journey}", flush=True)
                    try:
                        record.update(run_journey(journey, setup, journey_wanted, emit_for(record)))
                    except Exception as error:  # noqa: BLE001 - recorded; the other journeys still run
                        message = f"{type(error).__name__}: {error}" if not isinstance(error, BenchError) else str(error)
                        record["error"] = message
                        print(f"  failed: {message}", flush=True)
                        for case in journey_wanted - set(record["figures"]):
                            errors.setdefault(case, message)
                    if setup.timeline is not None:
                        record["timeline"] = setup.timeline
                    journeys_done.append(record)
            if args.profile:
                if args.server_url:
                    report["profile"] = {"error": "--profile starts its own server; not with --server-url"}
                else:
                    try:
                        report["profile"] = profile_first_load_and_stored_run(setup)
                    except ImportError:
                        report["profile"] = {"error": "pyinstrument is not installed (pip install pyinstrument)"}
                    except BenchError as error:
                        report["profile"] = {"error": str(error)}
            setup.browser.close()
    except BenchError as error:
        for figure in figures:
            if figure.case not in skipped:
                errors.setdefault(figure.case, str(error))
        print(f"failed: {error}", file=sys.stderr)
    finally:
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in [*workdir.glob("*.log"), *workdir.glob("failure-*.png")]:
                shutil.copy(log, args.keep_logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)

    report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report.setdefault("versions", {"streamlit": _version("streamlit"), "torch": _version("torch")})
    report["settings"] = {
        "cases": [f.case for f in figures], "checkpoint_dir": str(setup.checkpoint_dir),
        "checkpoint": setup.checkpoint_name, "rules": setup.rule_labels,
        "omniglot_root": None if setup.omniglot_root is None else str(setup.omniglot_root),
        "server_url": args.server_url, "settle_ms": args.settle_ms, "poll_ms": POLL_MS, "timeout_s": args.timeout,
        "stored_run": setup.stored_run or None, "launcher": Server.launcher,
    }
    report["figures"] = figure_rows(figures, samples, errors, skipped, shown_samples)
    report["targets"] = [{"case": r["case"], "target_s": r["target_s"], "median_s": r["median_s"], "met": r["met"]}
                         for r in report["figures"] if r["target_s"] is not None and r["median_s"] is not None]
    report["journeys"] = journeys_done
    report["servers"] = setup.servers
    report["selectors"] = SELECTORS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    if report.get("profile", {}).get("phases"):
        print_profile(report["profile"])
    elif report.get("profile"):
        print(f"\nProfile: {report['profile'].get('error')}")
    print(f"\nwritten {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
