"""The game in a real JupyterLab, played in Debian's headless Chromium through selenium.

The test starts its own JupyterLab on 127.0.0.1 (random port, random token, every Jupyter folder
inside ``tmp_path``), opens a copy of ``notebooks/01_play_general_points.ipynb`` with papermill's
parameters injected (vision variant, tiny-vlm, a budget of 2 turns), runs all cells from the Run
menu, plays one hand by typing a formula and pressing Enter and one by asking the model, checks the
verdicts on the page, and saves ``docs/images/widget.png``. Every process it starts (the server,
its kernel, the browser) is stopped by its id, also when the test fails.

Needs ``chromium``, ``chromium-driver`` (Debian) and the ``browser`` extra: ``make browser-test``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_play_general_points.ipynb"
SCREENSHOT = ROOT / "docs" / "images" / "widget.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1360,1640",
    "--hide-scrollbars",
)
PARAMETERS = {
    "vision": True,
    "model": "tiny-vlm",
    "verify_iter": 2,
    "max_new_tokens": 24,
    "seed": 7,
    "virl_split": "mini",
}
"""Injected as papermill does: the vision variant shows the rendered cards in the screenshot."""
SERVER_START_S = 60
KERNEL_AND_RUN_S = 120
RUN_ALL_RETRY_S = 45
"""Seconds without any cell starting after Run All Cells before it is chosen again (once a
click landed while the kernel was still connecting, and nothing ran)."""
MODEL_S = 180


@dataclass
class Lab:
    url: str
    token: str
    notebook: str
    runtime_dir: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _requirements() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (the browser extra)")
    if missing:
        pytest.fail(
            f"the browser test needs {', '.join(missing)}; run `make browser-test`, which "
            "installs chromium, chromium-driver and the browser extra",
            pytrace=False,
        )


def _write_notebook(folder: Path) -> str:
    """A copy of the notebook with the test's parameters injected after its parameters cell."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(NOTEBOOK))
    nb = parameterize_notebook(nb, PARAMETERS, kernel_name="python3", language="python")
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, folder / NOTEBOOK.name)
    return NOTEBOOK.name


def _processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line names ``marker`` (our kernels name our runtime folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                pids.append(int(entry.name))
    return pids


def _stop(server: subprocess.Popen, runtime_dir: Path) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left is killed by PID."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    for pid in _processes_mentioning(str(runtime_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    _requirements()
    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = _write_notebook(root)
    settings = tmp_path / "settings"
    toast = settings / "@jupyterlab" / "apputils-extension"
    toast.mkdir(parents=True)
    (toast / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    runtime_dir = tmp_path / "runtime"
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime_dir),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),  # extensions and kernels come from sys.prefix
        IPYTHONDIR=str(tmp_path / "ipython"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--allow-root",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        f"--LabApp.user_settings_dir={settings}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited:\n{log.read_text()[-3000:]}", pytrace=False)
            status = f"{url}/api/status?token={token}"
            with contextlib.suppress(OSError), urllib.request.urlopen(status, timeout=2) as reply:
                if reply.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.3)
        yield Lab(url, token, notebook, runtime_dir, log)
    finally:
        _stop(server, runtime_dir)
        assert _processes_mentioning(str(runtime_dir)) == []


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()  # ends Chromium and the chromedriver service it started


def test_play_in_jupyterlab(lab: Lab, browser, tmp_path: Path) -> None:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from sftvrl.envs.general_points import solutions

    driver = browser

    def wait(seconds: float, condition, what: str):
        try:
            return WebDriverWait(driver, seconds, poll_frequency=0.2).until(condition)
        except TimeoutException:
            driver.save_screenshot(str(tmp_path / "failure.png"))
            page = driver.find_element(By.TAG_NAME, "body").text[-3000:]
            pytest.fail(
                f"timed out waiting for {what}; screenshot in {tmp_path / 'failure.png'}\n"
                f"page text:\n{page}\nserver log:\n{lab.log.read_text()[-3000:]}",
                pytrace=False,
            )

    def css(selector: str):
        return driver.find_element(By.CSS_SELECTOR, selector)

    driver.get(f"{lab.url}/lab/tree/{lab.notebook}?token={lab.token}&reset")
    wait(
        60,
        ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")),
        "the notebook",
    )
    wait(
        60,
        ec.presence_of_element_located(
            (
                By.CSS_SELECTOR,
                ".jp-Notebook-ExecutionIndicator, .jp-KernelStatus, .jp-Toolbar-kernelName",
            )
        ),
        "the kernel toolbar",
    )
    # collapse the file browser, then run every cell from the Run menu as a user would
    with contextlib.suppress(Exception):
        css('.jp-SideBar.jp-mod-left li[data-id="filebrowser"]').click()

    def run_all_cells() -> None:
        wait(
            30,
            ec.element_to_be_clickable(
                (By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']")
            ),
            "the Run menu",
        ).click()
        wait(
            30,
            ec.element_to_be_clickable(
                (
                    By.XPATH,
                    "//div[contains(@class,'lm-Menu-itemLabel') and text()='Run All Cells']",
                )
            ),
            "Run All Cells",
        ).click()

    def cells_started(_driver) -> bool:
        prompts = driver.find_elements(By.CSS_SELECTOR, ".jp-InputArea-prompt")
        return any(p.text.strip() not in ("", "[ ]:") for p in prompts)

    run_all_cells()
    try:  # a click that lands while the kernel is still connecting runs nothing: ask once more
        WebDriverWait(
            driver,
            RUN_ALL_RETRY_S,
            poll_frequency=0.5,
            ignored_exceptions=(StaleElementReferenceException,),  # prompts redrawn as cells run
        ).until(cells_started)
    except TimeoutException:
        run_all_cells()

    # one hand by typing a formula
    answer = wait(
        KERNEL_AND_RUN_S,
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".sftvrl-gp-answer input")),
        "the game widget",
    )
    image = css("img.sftvrl-gp-image")
    assert driver.execute_script("return arguments[0].naturalWidth", image) > 0
    hand = css(".sftvrl-hand")
    numbers = [int(n) for n in hand.get_attribute("data-numbers").split()]
    target = int(hand.get_attribute("data-target"))
    formula = solutions(numbers, target)[0]
    answer.click()
    answer.send_keys(formula)
    answer.send_keys(Keys.ENTER)
    verdict = wait(
        30,
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".sftvrl-human-verdict")),
        "the verdict on the typed formula",
    )
    assert "Correct!" in verdict.text and "reward +5" in verdict.text, verdict.text
    assert "You 1 / 1 hands" in css(".sftvrl-gp-scoreboard").text

    # one by asking the model (random-init tiny-vlm: noise, and the verifier says why)
    css("button.sftvrl-gp-ask").click()
    final = wait(
        MODEL_S,
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".sftvrl-model-final")),
        "the model's last turn",
    )
    assert "tiny-vlm did not solve it" in final.text, final.text
    turns = driver.find_elements(By.CSS_SELECTOR, ".sftvrl-turn")
    assert len(turns) == PARAMETERS["verify_iter"]
    for k, turn in enumerate(turns, 1):
        assert f"Turn {k}" in turn.text and "reward" in turn.text and "verifier:" in turn.text
    assert "Model 0 / 1 games" in css(".sftvrl-gp-scoreboard").text
    assert not driver.find_elements(By.CSS_SELECTOR, ".sftvrl-error")

    # the screenshot for the README: the game from its title down
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", css(".sftvrl-gp"))
    time.sleep(0.5)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "widget.png"
    driver.save_screenshot(str(shot))
    shutil.copyfile(shot, SCREENSHOT)

    # the V-IRL walk below it: one expert step
    walk = css(".sftvrl-virl")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", walk)
    assert "Point 1 of" in css(".sftvrl-virl-header").text
    css("button.sftvrl-virl-expert").click()
    wait(
        30,
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".sftvrl-virl-header"), "Point 2 of"),
        "the walk's second point",
    )
    driver.save_screenshot(str(tmp_path / "virl.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
