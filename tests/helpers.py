"""Test helpers: a test-only method named on the command line as
`tests.helpers:SlowIdentity`, and the fast identity run used by many tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

from partedit_bench.method_api import EditMethod, EditRequest, EditResult

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
