"""The dashboard in a real headless Chromium: upload three classes, run ALFA and SGD, reopen the run after a reload.

Follows the recipe in ``../shared/notes/browser-testing.md``: Debian's ``/usr/bin/chromium`` driven by the
``playwright`` wheel (``playwright install`` is never needed). Writes the README screenshots to
``docs/screenshots/adapt.png`` and ``docs/screenshots/runs.png``. Without Chromium or Playwright the test
skips locally and fails under CI.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.settings import chromium_path
from core.store import Store
from tests.app.builders import SHAPES, TINY_IMAGE, save_tiny_checkpoint, shape_image, upload_classes, upload_queries
from tests.support.ports import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = chromium_path()
SCREENSHOTS = REPO / "docs" / "screenshots"
WAIT_MS = 120_000  # the CI machine may be busy: generous waits, each ends as soon as the page is ready
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run",
    # A fake webcam (Chromium's test pattern) that needs no permission prompt: the Camera source's test.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser tests: see .ci/run)")
    pytest.skip(reason)


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Until the Streamlit server at ``url`` answers its health check; fails with its log if it dies or stalls."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    return sync_playwright


def _seed_other_run(url: str, checkpoint: Path) -> None:
    """A second, different run (2-way 1-shot, SGD only) so the Runs page has something to compare."""
    from core.data.images import ImageSpec
    from core.data.uploads import episode_from_uploads
    from core.runs import run_rules
    from core.store import Store

    episode, items = episode_from_uploads(upload_classes(2, shots=1), upload_queries(2), ImageSpec.from_dict(TINY_IMAGE))
    with Store(url) as store:
        run_rules(store=store, checkpoint_path=checkpoint, rules=["sgd"], episode=episode, items=items, steps=5,
                  device="cpu", source="upload", dataset="upload", split=None, seed=None)


def _shipped_default_checkpoint() -> Path | None:
    """The shipped default checkpoint (assets/checkpoints, first in its manifest), if it is an ALFA image model."""
    from core.checkpoint import find_checkpoints
    from core.settings import SHIPPED_CHECKPOINT_DIR

    entries = find_checkpoints([SHIPPED_CHECKPOINT_DIR]) if SHIPPED_CHECKPOINT_DIR.is_dir() else []
    if entries and entries[0].metadata is not None and entries[0].metadata.rule.name == "alfa":
        return entries[0].path
    return None


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, sync_playwright) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    # The shipped files in place: they adapt well, and the README screenshots show their real paths.
    checkpoint = _shipped_default_checkpoint()
    if checkpoint is None:
        checkpoint = save_tiny_checkpoint(tmp / "checkpoints" / "tiny-alfa.safetensors")
    database = f"sqlite:///{tmp / 'dashboard.sqlite3'}"
    _seed_other_run(database, checkpoint)
    port = free_port()
    env = {
        **os.environ,
        "FEWSHOT_DATABASE_URL": database,
        "FEWSHOT_DEFAULT_CHECKPOINT_DIRS": str(checkpoint.parent),
        "FEWSHOT_CHECKPOINT_DIRS": "",
        "FEWSHOT_DEVICE": "cpu",
    }
    log = open(tmp / "streamlit.log", "wb")  # noqa: SIM115 - closed below, after the server stops
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, tmp / "streamlit.log")
        yield {"url": url, "database": database, "checkpoint": str(checkpoint)}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def app_url(dashboard) -> str:
    return dashboard["url"]


@pytest.fixture
def browser(sync_playwright, app_url):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _new_page(browser):
    """A page in its own browser context: its own cookies and websocket, so its own Streamlit session."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"]).new_page()
    page.set_default_timeout(WAIT_MS)
    return page


@pytest.fixture
def page(browser):
    return _new_page(browser)


def _images(folder: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    supports: dict[str, list[Path]] = {}
    for c, name in enumerate(SHAPES):
        supports[name] = []
        for i in range(3):
            path = folder / f"{name}-{i}.png"
            shape_image(c, i).save(path)
            supports[name].append(path)
    queries = []
    for c, name in enumerate(SHAPES):
        path = folder / f"query-{name}.png"
        shape_image(c, 4).save(path)
        queries.append(path)
    return supports, queries


def _choose(page, combobox_name: str, option: str, attempts: int = 3) -> None:
    """Pick ``option`` in a Streamlit selectbox (a react-aria combobox): type to filter, Enter, and check it shows.

    The keyboard picks the filtered option: a click can miss it while the list is laid out again. A rerun in
    flight can replace the widget while typing, so the whole pick is retried once the page is idle.
    """
    for attempt in range(attempts):
        _wait_idle(page)
        combo = page.get_by_role("combobox", name=combobox_name)
        try:
            combo.click()
            combo.press_sequentially(option, delay=20)
            page.get_by_role("option", name=option, exact=True).first.wait_for(timeout=15_000)
            combo.press("Enter")
            _wait_idle(page)
            page.wait_for_function(
                "([name, option]) => [...document.querySelectorAll('input[role=combobox]')]"
                ".some(c => c.getAttribute('aria-label') === name && c.value === option)",
                arg=[combobox_name, option], timeout=15_000,
            )
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")


def _upload(page, file_input, paths, shown, attempts: int = 3) -> None:
    """Set the files and wait until the page shows them.

    A rerun that is still in flight (the class names were just typed) can re-create the uploader and drop
    files set in the meantime, so the upload is retried once the page is idle; a real failure still fails.
    """
    for attempt in range(attempts):
        _wait_idle(page)
        file_input.set_input_files([str(p) for p in paths])
        try:
            shown.wait_for(timeout=15_000)
            return
        except Exception:
            if attempt == attempts - 1:
                raise


def _wait_idle(page) -> None:
    """Until Streamlit has finished the current rerun."""
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=WAIT_MS,
    )
    page.wait_for_timeout(300)


def _tall_screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its own container, so grow the viewport to the content."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], section, div')]"
        ".slice(0, 400).map(e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 40, 1000), 6000)})
    page.wait_for_timeout(1500)  # plotly resizes to the new width
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _file_input(page, index: int):
    """The index-th file input of the page (classes in order, then the queries), found afresh: each one is
    replaced by an empty one once its files are taken into the episode."""
    return page.locator("input[type=file]").nth(index)


def _open_adapt(page, app_url: str, source: str) -> None:
    page.goto(app_url)
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_text("Adapt to a new episode").wait_for()
    page.get_by_text("Device: cpu").wait_for()
    _wait_idle(page)
    page.get_by_text(source, exact=True).click()
    page.get_by_label("Class 1 name").wait_for()
    _wait_idle(page)


def _name_classes(page, class_names) -> None:
    for number in range(3, len(class_names) + 1):  # a new episode has two classes
        page.get_by_role("button", name="Add a class").click()
        page.get_by_label(f"Class {number} name").wait_for()
        _wait_idle(page)
    for index, name in enumerate(class_names):
        box = page.get_by_label(f"Class {index + 1} name")
        box.fill(name)
        box.press("Enter")
        _wait_idle(page)


def _upload_episode(page, app_url, class_names, supports: list[list[Path]], queries: list[Path], labels: dict[str, str]) -> None:
    """Open Adapt, name the classes, upload their supports and the queries, label some queries."""
    _open_adapt(page, app_url, "Upload images")
    _name_classes(page, class_names)
    assert page.locator("input[type=file]").count() == len(class_names) + 1
    for index, paths in enumerate(supports):
        _upload(page, _file_input(page, index), paths, page.get_by_text(paths[-1].name, exact=True))
    _upload(page, _file_input(page, len(class_names)), queries, page.get_by_text(f"Label of {queries[-1].name}"))
    _wait_idle(page)
    for query, label in labels.items():
        _choose(page, f"Label of {query}", label)
        _wait_idle(page)


def test_upload_run_reload_and_reopen(page, app_url, tmp_path) -> None:
    supports, queries = _images(tmp_path / "images")
    # Three classes with three support images each, plus one query per class (two of them labelled).
    _upload_episode(
        page, app_url, SHAPES, [supports[name] for name in SHAPES], queries,
        {f"query-{name}.png": name for name in SHAPES[:2]},
    )

    # ALFA and SGD are both chosen by default for an ALFA checkpoint.
    page.get_by_text("SGD (MAML)", exact=True).first.wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Run #2", exact=True).wait_for()
    _wait_idle(page)

    metrics = page.locator("[data-testid='stMetric']")
    assert metrics.count() == 2
    texts = metrics.all_inner_texts()
    assert texts[0].startswith("ALFA accuracy") and texts[1].startswith("SGD (MAML) accuracy")
    assert all(t.strip().endswith("%") for t in texts)
    assert page.get_by_text("query-circle.png").count() >= 1
    assert page.get_by_text("truth: unlabelled").count() == 1
    # One gallery element: every query's picture inline, none broken.
    gallery = page.locator("img.fs-main")
    assert gallery.count() == 3
    assert page.evaluate("() => [...document.querySelectorAll('img.fs-main')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("[data-testid='stPlotlyChart']").count() == 0  # charts wait for their tab
    assert page.get_by_role("button", name="Deploy").count() == 0  # the toolbar is in viewer mode
    _tall_screenshot(page, SCREENSHOTS / "adapt.png")
    page.get_by_role("tab", name="α and β").click()
    page.get_by_text("α and β per layer and step", exact=True).wait_for()
    page.get_by_text("ALFA: α and β per layer and step").wait_for()  # the heatmap of the generated values
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()
    _wait_idle(page)
    _tall_screenshot(page, SCREENSHOTS / "alpha-beta.png")

    # The permalink opens the stored run on the Runs page, and survives a reload.
    page.get_by_role("link", name="Permalink: Runs page, ?run=2").click()
    page.wait_for_url("**/runs?run=2")
    page.get_by_text("Run #2", exact=True).wait_for()
    page.reload()
    page.get_by_text("Run #2", exact=True).wait_for()
    page.get_by_text("ALFA accuracy").wait_for()
    page.get_by_role("tab", name="Loss per step").click()
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()

    # A fresh visit starts a new session: the Adapt page no longer shows the run, but it is stored...
    page.goto(app_url)
    page.get_by_text("Adapt to a new episode").wait_for()
    _wait_idle(page)
    assert page.get_by_text("Run #2", exact=True).count() == 0

    # ...and reopens from the Runs page: a ticked row offers to open it.
    page.goto(f"{app_url}/runs?select=2")
    page.get_by_role("heading", name="Runs").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    page.get_by_role("button", name="Open run #2", exact=True).click()
    page.get_by_text("Run #2", exact=True).wait_for()
    _wait_idle(page)
    assert "run=2" in page.evaluate("location.href")  # Playwright's page.url lags Streamlit's URL rewrites
    # The stored run renders below its heading in the same script run; wait for its metrics to arrive.
    page.locator("[data-testid='stMetric']").nth(1).wait_for()
    assert page.locator("[data-testid='stMetric']").count() == 2
    page.locator("img.fs-main").first.wait_for()

    # Compare both stored runs (the selection lives in the URL) and keep the Runs screenshot.
    page.goto(f"{app_url}/runs?select=2&select=1")
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    page.get_by_text("2 selected run(s)", exact=True).wait_for()
    _wait_idle(page)
    page.locator("[data-testid='stPlotlyChart']").first.wait_for()
    _tall_screenshot(page, SCREENSHOTS / "runs.png")
    assert (SCREENSHOTS / "adapt.png").stat().st_size > 10_000 and (SCREENSHOTS / "runs.png").stat().st_size > 10_000


def _shown_run_id(page) -> int:
    page.get_by_text(re.compile(r"^Run #\d+$")).first.wait_for()
    return int(page.get_by_text(re.compile(r"^Run #\d+$")).first.inner_text().strip().lstrip("Run #"))


def test_two_sessions_adapting_at_once_get_independent_correct_results(browser, dashboard, tmp_path) -> None:
    """Two browser sessions press Run together on different episodes: each sees its own run, and every stored
    prediction equals what a sequential re-run of the same episode gives."""
    from core.runs import rerun
    from core.store import Store

    supports, queries = _images(tmp_path / "images")
    first, second = _new_page(browser), _new_page(browser)
    # The same pictures under other names and in another class order: the two episodes differ.
    _upload_episode(first, dashboard["url"], SHAPES, [supports[n] for n in SHAPES], queries, {})
    renamed = ["sun", "moon", "star"]
    _upload_episode(second, dashboard["url"], renamed, [supports[n] for n in reversed(SHAPES)], queries[:2],
                    {queries[0].name: "star"})
    first.get_by_role("button", name="Run", exact=True).click()
    second.get_by_role("button", name="Run", exact=True).click()
    run_ids = [_shown_run_id(page) for page in (first, second)]
    assert run_ids[0] != run_ids[1]
    for page in (first, second):
        _wait_idle(page)
    second.get_by_text("truth: star").first.wait_for()

    with Store(dashboard["database"]) as store:
        stored = [store.get_run(run_id) for run_id in run_ids]
        assert stored[0].class_names == list(SHAPES) and stored[1].class_names == renamed
        assert [len(a.predictions) for a in stored[0].adaptations] == [3, 3]
        assert [len(a.predictions) for a in stored[1].adaptations] == [2, 2]
        for detail in stored:
            again = store.get_run(rerun(store, detail.id, device="cpu"))
            for original, repeated in zip(detail.adaptations, again.adaptations, strict=True):
                assert original.rule == repeated.rule
                assert original.predictions == repeated.predictions
                for p, q in zip(original.probabilities, repeated.probabilities, strict=True):
                    assert p == pytest.approx(q, abs=1e-5)


def test_chromium_is_the_debian_one() -> None:
    """The recipe relies on Debian's browser; ``playwright install`` must never be needed."""
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    assert shutil.which(str(CHROMIUM))


def _stored_runs(database: str):
    with Store(database) as store:
        return store.list_runs()


def test_changing_a_setting_while_a_run_is_going_keeps_the_run(page, dashboard, tmp_path) -> None:
    """Click Run, then move the steps slider while the run adapts: the run finishes, is stored and shown."""
    supports, queries = _images(tmp_path / "images")
    _upload_episode(page, dashboard["url"], SHAPES, [supports[n] for n in SHAPES], queries, {})
    before = {s.id for s in _stored_runs(dashboard["database"])}
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(12):  # many steps: the run takes long enough to be interrupted
        slider.press("ArrowRight")
    _wait_idle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text(re.compile(r"step \d+/\d+|loading the checkpoint|Starting")).first.wait_for()
    slider.focus()
    slider.press("ArrowLeft")  # a setting changes while the run is in flight: the script reruns
    run_id = _shown_run_id(page)
    _wait_idle(page)
    [new] = [s for s in _stored_runs(dashboard["database"]) if s.id not in before]
    assert new.id == run_id and new.status == "succeeded" and new.rules == ["alfa", "sgd"]
    # On a loaded machine the rerun that draws the stored run's results can start after _wait_idle's pause (a
    # failure seen with other jobs on both cores): wait for the second metric, then check there are exactly two.
    page.locator("[data-testid='stMetric']").nth(1).wait_for(timeout=WAIT_MS)
    _wait_idle(page)
    assert page.locator("[data-testid='stMetric']").count() == 2


def _draw(page, canvas_key: str, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes (points as fractions of the canvas side) with the mouse on the canvas with this key."""
    container = page.locator(f".st-key-{canvas_key}")
    container.scroll_into_view_if_needed()  # mouse events land at viewport coordinates
    canvas = container.locator("canvas").last  # fabric.js draws on its upper canvas
    canvas.wait_for()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=8)
        page.mouse.up()


# Strokes of two hand-drawn symbols, two variants each: a plus and a "V".
PLUS = [[(0.3, 0.5), (0.7, 0.5)], [(0.5, 0.3), (0.5, 0.7)]]
VEE = [[(0.3, 0.3), (0.5, 0.7), (0.7, 0.3)]]


def _shifted(strokes, dx: float):
    return [[(x + dx, y) for x, y in stroke] for stroke in strokes]


def _add_drawing(page, target: str, strokes, count_before: int) -> None:
    # Each addition gives the target a fresh canvas, keyed by how many were added before.
    canvas_key = f"canvas_{target}_{count_before}"
    button = page.locator(f".st-key-add_drawing_{target} button")
    for attempt in range(3):
        # The canvas reports its drawing on mouse-up; a rerun in flight can replace the canvas under the mouse,
        # so draw again if the page has not taken the drawing.
        _draw(page, canvas_key, strokes)
        _wait_idle(page)
        try:
            page.wait_for_function(
                f"() => {{ const b = document.querySelector('.st-key-add_drawing_{target} button');"
                " return b && !b.disabled; }", timeout=15_000)
            break
        except Exception:
            if attempt == 2:
                raise
    button.click()
    page.get_by_text(f"drawing-{count_before + 1}.png", exact=True).first.wait_for()
    _wait_idle(page)


def test_draw_classes_and_queries_with_the_mouse_and_run(page, dashboard) -> None:
    _open_adapt(page, dashboard["url"], "Draw")
    _name_classes(page, ["plus", "vee"])
    for target, strokes in (("0", PLUS), ("1", VEE)):
        for variant in range(2):
            _add_drawing(page, target, _shifted(strokes, 0.05 * variant - 0.02), variant)
    _add_drawing(page, "query", _shifted(PLUS, 0.03), 0)
    _add_drawing(page, "query", _shifted(VEE, -0.03), 1)
    _choose(page, "Label of drawing-1.png", "plus")
    _wait_idle(page)
    _choose(page, "Label of drawing-2.png", "vee")
    _wait_idle(page)
    _tall_screenshot(page, SCREENSHOTS / "draw.png")
    page.get_by_role("button", name="Run", exact=True).click()
    run_id = _shown_run_id(page)
    _wait_idle(page)

    with Store(dashboard["database"]) as store:
        detail = store.get_run(run_id)
        assert detail.source == "drawing" and detail.class_names == ["plus", "vee"]
        assert [i.source_name for i in detail.items] == ["drawing-1.png", "drawing-2.png"] * 3
        assert [i.label for i in detail.items if i.role == "query"] == [0, 1]
        data, mime = store.get_image(detail.items[0].image_sha256)
    assert mime == "image/png"
    with Image.open(io.BytesIO(data)) as drawing:
        grey = drawing.convert("L")
        assert grey.getpixel((0, 0)) == 255 and grey.getextrema()[0] < 64  # dark strokes on white paper


def test_photograph_classes_with_the_webcam_and_run(page, dashboard) -> None:
    """Chromium's fake camera stands in for a webcam: a photo per class and one query, then a run."""
    _open_adapt(page, dashboard["url"], "Camera")
    _name_classes(page, ["first", "second"])
    for index, target in enumerate(("0", "1", "query")):
        page.get_by_role("button", name="Take Photo").nth(index).wait_for()
        page.get_by_role("button", name="Take Photo").nth(index).click()
        _wait_idle(page)
        page.locator("text=photo-1.jpg").nth(index).wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    run_id = _shown_run_id(page)
    _wait_idle(page)
    with Store(dashboard["database"]) as store:
        detail = store.get_run(run_id)
    assert detail.source == "camera" and detail.class_names == ["first", "second"]
    assert [i.source_name for i in detail.items] == ["photo-1.jpg"] * 3
    assert [i.mime for i in detail.items] == ["image/jpeg"] * 3
