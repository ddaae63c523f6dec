"""`partedit-bench demo` in a real browser: the gradio app starts on a loopback port with the
shipped partworld-sd backbone, the form is filled, an edit runs and its images come back."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from partedit_bench.demo import edit_prompt
from tests.conftest import REPO, cli_command, cli_env
from tests.helpers import CHROMEDRIVER, CHROMIUM, NO_BROWSER, chrome


def test_the_prompt_pair_of_the_official_demo():
    assert (
        edit_prompt("a photo of a man", "man", "a robotic", "humanoid-head")
        == "a photo of a man with a robotic <humanoid-head>"
    )
    assert (
        edit_prompt("a man on a beach", "man", "a bronze", "humanoid-head")
        == "a man with a bronze <humanoid-head> on a beach"
    )
    assert edit_prompt("a cat", "dog", "a lion", "animal-head") == "a cat with a lion <animal-head>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)
def test_an_edit_made_in_the_browser(tmp_path):
    pytest.importorskip("gradio", reason="the demo extra: pip install -e '.[demo]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    log = (tmp_path / "demo.log").open("w")
    env = cli_env()
    env["TMPDIR"] = str(tmp_path / "tmp")  # where the demo keeps its outputs while it runs
    (tmp_path / "tmp").mkdir()
    server = subprocess.Popen(
        [*cli_command("demo", "--port", str(port))], cwd=REPO, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    driver = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert server.poll() is None, (tmp_path / "demo.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo did not start: " + (tmp_path / "demo.log").read_text()[-2000:])
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        driver = chrome(downloads)
        wait = WebDriverWait(driver, 180)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#original textarea")))
        # the form as it opens: the default example, seed 0, the default steps
        driver.find_element(By.ID, "run").click()
        edited = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#edited img")))
        wait.until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", edited))  # fmt: skip
        # the 64 px edit is shown enlarged (x4, nearest); the download keeps it at 64 px
        assert driver.execute_script("return arguments[0].naturalWidth", edited) == 256
        status = wait.until(lambda d: d.find_element(By.ID, "status").text.strip() or None)
        assert "generated, then edited" in status and "seed 0:" in status
        prompt = "a photo of a person with a purple <humanoid-head> wearing a white shirt"
        assert prompt in status  # the default example
        assert "seed0" in driver.find_element(By.ID, "download").text
        import io
        import urllib.request

        import numpy as np
        from PIL import Image

        (kept,) = (tmp_path / "tmp").glob("partedit-demo-*/edited-seed0-*.png")
        assert Image.open(kept).size == (64, 64)

        def shown(selector):  # the image the page shows, as floats in [0, 1]
            src = driver.find_element(By.CSS_SELECTOR, selector).get_attribute("src")
            data = urllib.request.urlopen(src, timeout=30).read()
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64) / 255

        edit, source, overlay = shown("#edited img"), shown("#source img"), shown("#mask img")
        change = np.abs(edit - source).mean(-1)
        part = np.abs(overlay - edit).max(-1) > 0.1  # where the mask view tints: the part
        assert 0.02 < part.mean() < 0.9, part.mean()
        # the part visibly changes, and more than the rest (measured 0.118 / 0.024 on seed 0)
        assert change[part].mean() > 0.05 and change[part].mean() > 2 * change[~part].mean()
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert not list((tmp_path / "tmp").glob("partedit-demo-*"))  # nothing left behind
