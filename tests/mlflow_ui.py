"""Drive the real MLflow UI in a real headless browser: a helper module for tests (not a test file).

* :func:`mlflow_server` (from :mod:`tests.mlflow_server`) starts ``mlflow server`` on 127.0.0.1 in its own
  process group, polls ``/health`` and, on exit, stops the whole group (SIGTERM, then SIGKILL): no uvicorn
  worker outlives it.
* :func:`chromium_page` launches Debian's ``/usr/bin/chromium`` through Playwright (never ``playwright install``).
  Every request that does not go to 127.0.0.1 is aborted, so a test stays hermetic on any network.
* Page helpers (:func:`open_experiment`, :func:`open_runs`, :func:`sidebar`, :func:`show_metric_columns`,
  :func:`run_metrics`, :func:`run_artifacts`, :func:`screenshot`) act as a user does (click the experiment, the run, the Artifacts tab) and wait on real
  selectors, never on sleeps.

MLflow 3.17 and 3.18 quirks handled here (see :data:`UI_PRESETS`): the UI opens every experiment in its "GenAI"
view (a GenAI "Overview", no runs table) unless ``workflowType=machine_learning`` is in the URL (:func:`runs_url`,
the README's link) or in localStorage -- its global GenAI / Model training toggle decides, and the experiment's
``mlflow.experimentKind`` tag (which seqlab sets) is ignored for that -- and an "MLflow Assistant" side panel opens
by itself on first load. Metric columns are hidden in the runs table until chosen in "Columns" (no URL parameter
shows one).

Regenerate the README screenshot from a real store::

    python -m tests.mlflow_ui --store sqlite:///$PWD/mlflow.db --experiment austen-char --out docs/mlflow-ui.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.mlflow_server import ServerUrl, free_port, mlflow_server, process_group_members, stop_process_group

__all__ = [  # the server helpers are re-exported: tests import this one module
    "ServerUrl", "free_port", "mlflow_server", "process_group_members", "stop_process_group",
    "chromium_page", "click_experiment", "open_experiment", "runs_url", "open_runs", "sidebar", "show_metric_columns",
    "hide_columns", "open_run", "run_metrics", "run_artifacts", "screenshot", "main",
]

if TYPE_CHECKING:  # playwright is a dev dependency: imported only where a browser is launched
    from playwright.sync_api import Page

CHROMIUM = os.environ.get("SEQLAB_CHROMIUM", "/usr/bin/chromium")  # Debian's; override elsewhere
# Without the background-networking flags chromium keeps dialling Google services, which a closed network
# refuses many times over; --disable-dev-shm-usage because containers often give /dev/shm only 64 MB.
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)
# localStorage entries (MLflow's `<key>_v<version>` JSON convention) set before the app starts: open the
# classic "Model training" view and keep the assistant panel closed. Harmless if a later MLflow ignores them.
UI_PRESETS = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
}
RUN_NAME_LINKS = '[role=gridcell][col-id="attributes.`Run Name`"] a'


# ---------------------------------------------------------------------------------------------- the browser

@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1600, 900), timeout_ms: int = 30_000, *,
                  presets: bool = True) -> Iterator[Page]:
    """A Playwright page in a fresh headless Debian chromium (a new temporary profile each launch).

    ``presets``: set :data:`UI_PRESETS` before the app starts; ``False`` is a new user's browser.
    """
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} not found: install Debian's chromium (`make browser-deps`, needs root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright adds --headless and its own fresh --user-data-dir (deleted on close).
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_FLAGS))
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            if presets:
                context.add_init_script("".join(
                    f"window.localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(value))});"
                    for key, value in UI_PRESETS.items()))
            # Hermetic: the UI may reach for fonts or telemetry elsewhere; only 127.0.0.1 is allowed.
            context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
            context.set_default_timeout(timeout_ms)
            yield context.new_page()
        finally:
            browser.close()


def _exact(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def click_experiment(page: Page, base_url: str, name: str) -> None:
    """Open the experiment list and click experiment ``name``."""
    page.goto(f"{base_url}/#/experiments")
    page.get_by_test_id("experiment-list-item-link").filter(has_text=_exact(name)).first.click()


def open_experiment(page: Page, base_url: str, name: str) -> list[str]:
    """Click experiment ``name`` in the list; return the run names its runs table lists."""
    click_experiment(page, base_url, name)
    return _run_names(page)


def runs_url(base_url: str, experiment_id: str) -> str:
    """The address that opens an experiment's runs table in the "Model training" view in any browser."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def open_runs(page: Page, base_url: str, experiment_id: str) -> list[str]:
    """Go to :func:`runs_url`; return the run names its runs table lists."""
    page.goto(runs_url(base_url, experiment_id))
    return _run_names(page)


def _run_names(page: Page) -> list[str]:
    links = page.locator(RUN_NAME_LINKS)
    links.first.wait_for()
    return [text.strip() for text in links.all_inner_texts()]


def sidebar(page: Page, item: str) -> list[str]:
    """The left sidebar's entries, read once ``item`` shows among them."""
    aside = page.locator("aside").first
    aside.get_by_text(_exact(item)).first.wait_for()
    return [line.strip() for line in aside.inner_text().splitlines() if line.strip()]


def show_metric_columns(page: Page, metrics: Sequence[str]) -> dict[str, dict[str, str]]:
    """On an open runs table, add ``metrics`` as columns ("Columns" menu); return {run name: {metric: shown text}}.

    The texts are what the UI shows (MLflow 3.17 shows the full float repr, e.g. ``8.959999999999999``).
    Keep the viewport wide: the grid renders only the columns in or near view.
    """
    for metric in metrics:
        _toggle_column(page, metric)
        page.locator(f'[role=columnheader][col-id="metrics.`{metric}`"]').wait_for()
    return _runs_table(page, metrics)


def hide_columns(page: Page, attributes: Sequence[str] = ("Dataset", "Source", "Models")) -> None:
    """On an open runs table, hide attribute columns (by their header text), e.g. empty ones before a screenshot."""
    for name in attributes:
        header = page.locator(f'[role=columnheader][col-id="attributes.`{name}`"]')
        if header.count():
            _toggle_column(page, name)
            header.wait_for(state="detached")


def _toggle_column(page: Page, name: str) -> None:
    """Tick or untick ``name`` in the runs table's "Columns" menu."""
    page.get_by_role("button", name="Columns", exact=True).click()
    selector = page.locator('[role=dialog][data-component-id="mlflow.experiment_page.runs_table.column_selector"]')
    selector.get_by_placeholder("Search columns").fill(name)
    # The tree lists attributes, metrics, params, tags in that order: the first exact match is the wanted one
    # (an attribute for hide_columns, a metric for show_metric_columns unless an attribute has its name).
    selector.locator(".du-bois-light-tree-title", has_text=_exact(name)).first.click()
    page.keyboard.press("Escape")


def _runs_table(page: Page, metrics: Sequence[str]) -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for link in page.locator(RUN_NAME_LINKS).all():
        row_id = link.locator("xpath=ancestor::*[@role='row']").get_attribute("row-id")
        table[link.inner_text().strip()] = {
            metric: page.locator(f'[role=row][row-id="{row_id}"] [role=gridcell][col-id="metrics.`{metric}`"]')
            .inner_text().strip()
            for metric in metrics}
    return table


def open_run(page: Page, base_url: str, experiment: str, run_name: str) -> None:
    """Open ``experiment`` and click its run ``run_name``; wait for the run page."""
    open_experiment(page, base_url, experiment)
    page.locator(RUN_NAME_LINKS, has_text=_exact(run_name)).first.click()
    page.get_by_role("tab", name="Artifacts").wait_for()


def run_metrics(page: Page, base_url: str, experiment: str, run_name: str) -> dict[str, str]:
    """The Metrics table of a run's Overview page: {metric: shown value}."""
    open_run(page, base_url, experiment, run_name)
    table = page.locator("[role=table]", has=page.get_by_role("columnheader", name="Metric"))
    table.locator("[role=cell]").first.wait_for()
    metrics = {}
    for row in table.locator("[role=row]:has([role=cell])").all():
        cells = [text.strip() for text in row.locator("[role=cell]").all_inner_texts()]
        metrics[cells[0]] = cells[1]
    return metrics


def run_artifacts(page: Page, base_url: str, experiment: str, run_name: str, max_depth: int = 4) -> list[str]:
    """Open a run's Artifacts tab, expand folders down to ``max_depth``; return the file paths the tree shows."""
    open_run(page, base_url, experiment, run_name)
    page.get_by_role("tab", name="Artifacts").click()
    nodes = page.locator("[data-testid=artifact-tree-node]")
    nodes.first.wait_for()
    for _depth in range(max_depth):
        closed = [node for node in nodes.all() if _is_closed_folder(node)]
        if not closed:
            break
        for node in closed:  # MLflow lists a folder's content only once it is opened
            node.click()
            _wait_for_children(node)
    return sorted(path for path, is_dir in nodes.evaluate_all(_TREE_PATHS_JS) if not is_dir)


def _wait_for_children(folder, timeout_ms: int = 10_000) -> None:
    """Wait until an opened folder shows its entries (its <ul> appears empty first, while MLflow lists it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):  # an empty folder never shows any
        folder.locator("xpath=ancestor::li[1]/div[2]/ul//*[@data-testid='artifact-tree-node']").first.wait_for(
            timeout=timeout_ms)


def _is_closed_folder(node) -> bool:
    return (node.locator("i.fa-folder, i.fa-folder-open").count() > 0
            and node.locator("xpath=ancestor::li[1]/div[2]/ul").count() == 0)


# Full path of each tree node: the names of its enclosing <li> nodes; folders have a folder icon.
_TREE_PATHS_JS = """nodes => nodes.map(n => {
  const names = [];
  for (let li = n.closest('li'); li; li = li.parentElement.closest('li')) {
    names.unshift(li.querySelector('[data-testid=artifact-tree-node]').getAttribute('artifact-name'));
  }
  return [names.join('/'), !!n.querySelector('i.fa-folder, i.fa-folder-open')];
})"""


def screenshot(page: Page, path: str | Path) -> Path:
    """Save a full-page PNG of what the page shows now (written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    page.mouse.move(0, 0)  # no hover highlight or focus ring left over from the last click
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(tmp), full_page=True)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mlflow_ui",
                                     description="Screenshot an experiment's runs table in the real MLflow UI.")
    parser.add_argument("--store", required=True, help="backend store URI, e.g. sqlite:///ABS/PATH/mlflow.db")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--artifacts", type=Path, help="artifact root (default: mlartifacts/ beside the sqlite file)")
    parser.add_argument("--metric", action="append", help="metric column to show (repeatable; default: "
                        "val_perplexity and test_perplexity where logged)")
    args = parser.parse_args(argv)
    artifacts = args.artifacts or _default_artifacts(args.store)
    with mlflow_server(args.store, artifacts) as url, chromium_page(viewport=(1440, 720)) as page:
        runs = open_experiment(page, url, args.experiment)
        hide_columns(page)
        metrics = args.metric or _logged(page, url, args.experiment, ("val_perplexity", "test_perplexity"))
        table = show_metric_columns(page, metrics)
        screenshot(page, args.out)
    print(f"{args.out}: {len(runs)} runs; " + "; ".join(f"{run} {values}" for run, values in table.items()))
    return 0


def _default_artifacts(store: str) -> Path:
    if not store.startswith("sqlite:///"):
        raise SystemExit("--artifacts is required unless --store is sqlite:///...")
    return Path(store[len("sqlite:///"):]).resolve().parent / "mlartifacts"


def _logged(page: Page, url: str, experiment: str, wanted: Sequence[str]) -> list[str]:
    """Those of ``wanted`` that some run of ``experiment`` logged (asked through the server's REST API)."""
    request = page.request
    found = request.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
    experiment_id = found.json()["experiment"]["experiment_id"]
    runs = request.post(f"{url}/api/2.0/mlflow/runs/search",
                        data={"experiment_ids": [experiment_id], "max_results": 1000}).json().get("runs", [])
    keys = {metric["key"] for run in runs for metric in run.get("data", {}).get("metrics", [])}
    return [metric for metric in wanted if metric in keys]


if __name__ == "__main__":
    sys.exit(main())
