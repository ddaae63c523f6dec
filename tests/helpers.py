"""Test helpers: a test-only method named on the command line as
`tests.helpers:SlowIdentity`, and the fast identity run used by many tests."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from partedit_bench.api import EditMethod, EditRequest, EditResult


def plain_generation(backbone, prompt, seed, steps, guidance=7.5):
    """Latents of the backbone's own diffusers pipeline from the seed's x_T (no control)."""
    from partedit_bench.editing import text_to_image

    return text_to_image(backbone, prompt, seed, steps, guidance, output_type="latent")


def spy_on_pipe(method) -> dict:
    """Wraps `method.pipe` so that every call's keyword arguments land in the returned dict
    (then calls the real pipeline)."""
    seen, pipe = {}, method.pipe

    def spy(**kwargs):
        seen.update(kwargs)
        return pipe(**kwargs)

    method.pipe = spy
    return seen


#: `partedit-bench run` of the identity method on the offline random-weight backbone.
IDENTITY_RUN = ["run", "--methods", "identity", "--backbone", "tiny-sd"]


@dataclass
class SlowOptions:
    delay_s: float = 0.0
    fail_on: str = ""
    threshold: str = "adaptive"


class SlowIdentity(EditMethod):
    """Returns the source after `delay_s` seconds; raises on the sample id `fail_on`."""

    name = "slow"
    uses_backbone = False
    Options = SlowOptions

    def edit(self, request: EditRequest) -> EditResult:
        time.sleep(self.options.delay_s)
        if request.sample.id == self.options.fail_on:
            raise RuntimeError(f"deliberate failure on {request.sample.id}")
        return EditResult(image=request.image.copy())


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_BROWSER = (
    "browser test needs Debian's chromium and chromium-driver "
    "(apt-get install chromium chromium-driver); .ci/run installs them"
)


def chrome(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={download_dir.parent / 'profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(download_dir), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver
