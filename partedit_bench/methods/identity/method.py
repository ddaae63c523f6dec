from __future__ import annotations

from partedit_bench.api import EditMethod, EditRequest, EditResult


class Identity(EditMethod):
    """Returns the source image as the "edit".

    Its scores are the fixed points of the background metrics (psnr_bg = 100 dB, ssim_bg = 1,
    leakage = 0) and the floor of the edit metrics, so a table row that disagrees points at a
    bug in scoring, not in a method.
    """

    name = "identity"
    needs = frozenset()
    uses_backbone = False

    def edit(self, request: EditRequest) -> EditResult:
        return EditResult(image=request.image.copy())
