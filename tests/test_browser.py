"""End to end in a real browser: JupyterLab serves notebook 05, Chromium runs it and drives the explorer: a latent
slider typed into and moved with the keyboard, reset and a new image (the Traverse tab keeps the moved dimension),
the Play buttons, a pick on the 2-D map and the save-PNG button.

Needs Chromium at /usr/bin/chromium (`apt-get install -y chromium`; Playwright's own browser download is not
used) and the playwright package; skipped with the reason when either is missing. The server, started on a
free port of 127.0.0.1 with no token, serves a copy of the notebook whose parameters ask for the tiny budget
and temporary runs/out folders; it is stopped by its process id at the end, its kernels first.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_latent_explorer.ipynb"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
QUIET_LAB = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":  # no news or update toasts
             {"fetchNews": "false", "checkForUpdates": False}}

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} "
                                "(install it with: apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def notebook_copy(folder: Path, params: dict) -> str:
    """notebook 05 with `params` appended to its parameters cell, outputs cleared; returns its file name."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "".join(f"\n{k} = {v!r}" for k, v in params.items())
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, folder / NOTEBOOK.name)
    return NOTEBOOK.name


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@contextmanager
def jupyterlab(tmp_path: Path, params: dict):
    """(base URL, notebook name) of a JupyterLab serving a copy of notebook 05 with `params`; stopped afterwards."""
    root, settings = tmp_path / "lab", tmp_path / "settings"
    root.mkdir()
    name = notebook_copy(root, params)
    for rel, value in QUIET_LAB.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "TQDM_DISABLE": "1"}
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{base}/api/status")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; log: {tmp_path / 'jupyterlab.log'}") from None
                time.sleep(0.25)
        yield base, name
    finally:
        try:
            for kernel in get_json(f"{base}/api/kernels"):
                req = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", method="DELETE")
                urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass  # the server is already gone
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


@pytest.fixture
def lab(tmp_path):
    params = {"budget": "tiny", "runs_dir": str(tmp_path / "runs"), "out_dir": str(tmp_path / "out"),
              "data_root": str(tmp_path / "data")}
    with jupyterlab(tmp_path, params) as served:
        yield served


def image_bytes(page, selector: str) -> bytes:
    """The bytes behind an <img> (ipywidgets serves them as a blob: URL)."""
    data = page.eval_on_selector(selector, """async img => {
        const buf = await (await fetch(img.src)).arrayBuffer();
        return Array.from(new Uint8Array(buf)); }""")
    return bytes(data)


def readout_value(locator) -> float:
    return float(locator.inner_text().replace("\u2212", "-"))  # d3-format writes a Unicode minus


KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
ALL_RUN = ("window.jupyterapp.shell.currentWidget.content.widgets.every(c => c.model.type !== 'code' "
           f"|| c.model.executionCount !== null) && {KERNEL}.status === 'idle'")
DECODED, SAMPLES = ".vaelib-explorer img.vaelib-decoded", ".vaelib-explorer img.vaelib-samples"
INTERP, FRAME = ".vaelib-explorer img.vaelib-interp", ".vaelib-explorer img.vaelib-traverse-frame"
MAP, MAP_DECODED = ".vaelib-explorer img.vaelib-map", ".vaelib-explorer img.vaelib-map-decoded"


def wait_changed(page, selector: str, src: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(f"document.querySelector('{selector}').src !== {json.dumps(src)}", timeout=timeout_ms)


def settle(page) -> None:
    """Wait until the kernel has handled what the browser sent (and the browser's echoes of its answers)."""
    page.wait_for_timeout(500)
    page.wait_for_function(f"{KERNEL}.status === 'idle'", timeout=60_000)


def type_into(page, locator, text: str) -> None:
    locator.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def drive_explorer(page, base: str, name: str, shot: Path) -> float:
    """Open the notebook, run all cells, type a new value into the first latent slider, reseed the samples;
    asserts the pictures change, saves a screenshot of the explorer; returns seconds from Enter to new image."""
    page.goto(f"{base}/lab/tree/{name}?reset")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget?.sessionContext?.session"
                           "?.kernel?.status === 'idle'", timeout=60_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")  # Run > Run All Cells
    page.wait_for_selector(DECODED, state="visible", timeout=120_000)
    page.wait_for_function(f"document.querySelector('{DECODED}').src.startsWith('blob:')")
    page.wait_for_function(ALL_RUN, timeout=120_000)  # every cell has run: nothing moves the widgets but us
    explorer = page.locator(".vaelib-explorer")
    explorer.scroll_into_view_if_needed()
    before, src = image_bytes(page, DECODED), page.get_attribute(DECODED, "src")
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    readout = page.locator(".vaelib-z-slider .widget-readout").first  # the slider's editable number
    new = -2.0 if readout_value(readout) > 0 else 2.0
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{new:.2f}")
    t0 = time.monotonic()
    page.keyboard.press("Enter")
    wait_changed(page, DECODED, src)
    seconds = time.monotonic() - t0
    assert image_bytes(page, DECODED) != before, "the decoded image did not change after the slider moved"
    assert readout_value(readout) == new

    page.get_by_role("tab", name="Sample", exact=True).click()
    old = page.get_attribute(SAMPLES, "src")
    page.get_by_role("button", name="reseed").click()
    wait_changed(page, SAMPLES, old)

    page.get_by_role("tab", name="Sliders", exact=True).click()
    page.wait_for_function(f"{KERNEL}.status === 'idle'", timeout=120_000)
    explorer.screenshot(path=str(shot))
    return seconds


def press_keys_on_a_slider(page) -> None:
    """Arrow keys move a latent slider's handle one step (0.05), PageUp five steps; each redraws the image.
    The second slider: its dimension is not the one the Traverse tab starts with."""
    handle = page.locator(".vaelib-z-slider .noUi-handle").nth(1)
    readout = page.locator(".vaelib-z-slider .widget-readout").nth(1)
    handle.focus()
    for key, step in (("ArrowLeft", -0.05), ("PageUp", 0.25)):
        before, src, value = image_bytes(page, DECODED), page.get_attribute(DECODED, "src"), readout_value(readout)
        page.keyboard.press(key)
        wait_changed(page, DECODED, src)
        assert readout_value(readout) == pytest.approx(value + step, abs=1e-9), key
        assert image_bytes(page, DECODED) != before, f"{key} on a slider did not change the decoded image"


def reset_and_new_image_keep_the_traverse_dimension(page) -> None:
    """The bug seen in class: after "reset sliders" and a new image, Traverse swept another dimension."""
    moved = page.locator(".vaelib-z-slider .widget-label").nth(1).inner_text()  # "z7": the slider moved above
    page.get_by_role("button", name="reset sliders").click()
    settle(page)
    type_into(page, page.locator(".vaelib-index input"), "3")
    settle(page)
    page.get_by_role("tab", name="Traverse", exact=True).click()
    shown = page.eval_on_selector(".vaelib-traverse-dim select", "s => s.options[s.selectedIndex].text")
    assert shown.split()[0] == moved, f"Traverse shows {shown!r} after reset and a new image, not {moved}"


def play(page, tab: str, button: str, picture: str) -> None:
    """Click the tab's Play button: the picture changes frame by frame without another click."""
    page.get_by_role("tab", name=tab, exact=True).click()
    before, src = image_bytes(page, picture), page.get_attribute(picture, "src")
    page.locator(f".vaelib-explorer {button} button").first.click()  # ▶; then pause, stop, repeat
    wait_changed(page, picture, src)
    # played to the end: the button shows ▶ again (its blob URLs are no longer replaced while we read one)
    page.wait_for_function(f"document.querySelector('.vaelib-explorer {button} button i').classList"
                           ".contains('fa-play')", timeout=30_000)
    settle(page)
    assert image_bytes(page, picture) != before, f"Play on the {tab} tab did not change the image"


def pick_on_the_map(page) -> None:
    """Typing another test image into the map's picker decodes its code and moves the ring on the map."""
    page.get_by_role("tab", name="Map", exact=True).click()
    before, src = image_bytes(page, MAP_DECODED), page.get_attribute(MAP_DECODED, "src")
    ring, ring_src = image_bytes(page, MAP), page.get_attribute(MAP, "src")
    type_into(page, page.locator(".vaelib-map-index input"), "7")
    wait_changed(page, MAP_DECODED, src)
    wait_changed(page, MAP, ring_src)
    settle(page)
    assert image_bytes(page, MAP_DECODED) != before, "picking a point on the map did not change the image"
    assert image_bytes(page, MAP) != ring, "the map's ring did not move to the picked point"


def save_png(page, root: Path) -> None:
    """"save PNG" on the Map tab writes the picked point's image, as shown, into the notebook's folder."""
    page.get_by_role("button", name="save PNG").click()
    page.wait_for_function("document.querySelector('.vaelib-save-label').textContent.startsWith('saved')",
                           timeout=30_000)
    path = root / "explorer-map-1.png"
    assert path.is_file(), f"save PNG wrote no {path}"
    assert str(path.resolve()) in page.locator(".vaelib-save-label").inner_text()  # it says where
    assert path.read_bytes() == image_bytes(page, MAP_DECODED)


def test_slider_moves_the_decoded_image_in_chromium(lab, tmp_path):
    base, name = lab
    t0 = time.monotonic()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            shot = tmp_path / "latent_explorer.png"
            seconds = drive_explorer(page, base, name, shot)
            press_keys_on_a_slider(page)
            reset_and_new_image_keep_the_traverse_dimension(page)
            play(page, "Interpolate", ".vaelib-interp-play", INTERP)
            play(page, "Traverse", ".vaelib-traverse-play", FRAME)
            pick_on_the_map(page)
            save_png(page, tmp_path / "lab")
            explorer_shot = tmp_path / "latent_explorer_map.png"
            page.locator(".vaelib-explorer").screenshot(path=str(explorer_shot))
        finally:
            browser.close()
    print(f"screenshot: {shot}; slider to new image in the browser: {seconds * 1000:.0f} ms; "
          f"browser part {time.monotonic() - t0:.0f} s")
