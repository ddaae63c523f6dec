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
    from selenium.webdriver.common.keys import Keys
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
        prompt = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#original textarea")))
        prompt.clear()
        prompt.send_keys("a photo of a woman")
        subject = driver.find_element(By.CSS_SELECTOR, "#subject textarea")
        subject.clear()
        subject.send_keys("woman")
        seed = driver.find_element(By.CSS_SELECTOR, "#seed input")
        seed.send_keys(Keys.CONTROL, "a")
        seed.send_keys("2")
        driver.find_element(By.XPATH, "//*[normalize-space(text())='advanced']").click()
        steps = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "#steps input[type=number]"))
        )
        steps.send_keys(Keys.CONTROL, "a")
        steps.send_keys("4", Keys.TAB)
        driver.find_element(By.ID, "run").click()
        edited = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#edited img")))
        wait.until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", edited))  # fmt: skip
        # the 64 px edit is shown enlarged (x4, nearest); the download keeps it at 64 px
        assert driver.execute_script("return arguments[0].naturalWidth", edited) == 256
        for part in ("#source img", "#mask img"):
            assert driver.find_elements(By.CSS_SELECTOR, part), part
        status = wait.until(lambda d: d.find_element(By.ID, "status").text.strip() or None)
        assert "generated, then edited" in status and "seed 2:" in status
        assert "a photo of a woman with a red <animal-head>" in status  # the default edit, part
        assert "seed2" in driver.find_element(By.ID, "download").text
        from PIL import Image

        (kept,) = (tmp_path / "tmp").glob("partedit-demo-*/edited-seed2-*.png")
        assert Image.open(kept).size == (64, 64)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert not list((tmp_path / "tmp").glob("partedit-demo-*"))  # nothing left behind
