"""Parity of `blended_latent` with omriav/blended-latent-diffusion's scripts
(`scripts/text_editing_SD2.py`, `BlendedLatnetDiffusion.edit_image`, on tiny-sd;
`scripts/text_editing_SDXL.py`, `BlendedLatentDiffusionSDXL.edit_image`, on tiny-sdxl).

Both sides run in float64 on the CPU with the same weights, the same image file and mask file,
the same target prompt, and every random draw served from one tape (the start noise, then one
map per step, in the scripts' order). Compared: the final latents (the scripts' VAE decoder
input, times the scaling factor). Glue, nothing else changed in the official code:

G1 `cuda` -> the CPU (`.to("cuda")`), and the fp16 casts keep float64 (`half_is_float64`).
G2 the scripts load their pipelines from the hub: given the tiny backbone's components.
G3 512 / 1024 px -> the tiny backbones' 64 px: `edit_image(height=64, width=64)`; the mask's
   fixed latent size (`_read_mask` dest_size 64 / 128) -> the tiny VAE's 16 (its factor is 4,
   not 8); the SD2 script's `torch.randn((.., height // 8, width // 8))` is served from the
   tape at the latent's shape.
G4 the scripts' `torch.randn` / `torch.randn_like` read the tape (their module's `torch` only,
   so the schedulers' own unused draws stay theirs).
G5 SDXL: diffusers 0.42's `_get_add_time_ids` needs `text_encoder_projection_dim` (the script
   predates it): given the text encoder's; the SDXL script encodes with its VAE cast to float32
   (`self.vae.float()`, G1 keeps float64), so its pixel tensor is cast to the VAE's dtype.

Cases: two PartWorld samples (64 px, no resize) and the astronaut photo (512 px: the source
is resized to 64 px, where the resize filter shows: bilinear in the scripts and, by default,
here) on each backbone.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.parity.common import (
    CHECKOUTS,
    Row,
    Tape,
    TorchWith,
    cuda_is_the_cpu,
    half_is_float64,
    load_file,
    max_abs,
    parser,
    report,
)

METHOD = "blended_latent"
CHECKOUT = CHECKOUTS[METHOD]
STEPS = 8
CASES = [
    f"{backbone}:{source}"
    for backbone in ("tiny-sd", "tiny-sdxl")
    for source in ("pw0-00003", "pw0-00007", "astronaut")
] + ["tiny-sd:astronaut:bicubic"]  # the option `resize=bicubic`: a deviation, shown with its size
#: why a case may differ (the option that departs from the scripts)
DEVIATIONS = {
    "bicubic": "`resize=bicubic` (the engine's filter before #31); the scripts resize bilinear",
}


def case_inputs(source: str) -> tuple[Any, Image.Image, np.ndarray]:
    """(sample, image, bool mask at the image's size) of a case."""
    from partedit_bench.data.schema import load_image, load_mask
    from partedit_bench.data.suites import load_suite

    samples = {s.id: s for s in load_suite("partworld").samples}
    if source == "astronaut":
        from skimage import data

        sample = samples["pw0-00003"]
        image = Image.fromarray(data.astronaut())
        mask = np.zeros((512, 512), bool)
        mask[40:200, 150:330] = True  # her head
        return sample, image, mask
    sample = samples[source]
    image = load_image(sample.original_image)
    return sample, image, load_mask(sample.gt_mask, image.size).astype(bool)


def ours(
    backbone: Any,
    sample: Any,
    image: Image.Image,
    mask: np.ndarray,
    tape: Tape,
    resize: str = "bilinear",
) -> Any:
    from partedit_bench.api import EditRequest
    from partedit_bench.methods.blended_latent import BlendedLatentOptions, blend

    options = BlendedLatentOptions(steps=STEPS, resize=resize)
    request = EditRequest(sample, image, 0, options, backbone, mask, False)
    record: list = []
    blend(backbone, request, options, record, noises=tape.maps)
    return record[-1][0]


def official(
    checkout: Path, backbone: Any, sample: Any, image: Image.Image, mask: np.ndarray, tape: Tape
) -> Any:
    from partedit_bench.api import target_prompt

    latent = backbone.latent_resolution
    size = backbone.resolution
    seen: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        image_path, mask_path = Path(scratch) / "image.png", Path(scratch) / "mask.png"
        image.save(image_path)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
        fake_torch = TorchWith(randn=tape.draw, randn_like=tape.draw)  # G4 (and G3's shape)
        pipe = backbone.pipeline()
        vae = pipe.vae

        def decode(latents: Any, *args: Any, **kwargs: Any) -> Any:  # the final latents
            seen["latents"] = latents * vae.config.scaling_factor
            return original_decode(latents, *args, **kwargs)

        original_decode = vae.decode
        vae.decode = decode
        try:
            with cuda_is_the_cpu(), half_is_float64():  # G1
                if backbone.family == "sdxl":
                    script = load_file(checkout / "scripts/text_editing_SDXL.py", "bld_sdxl")
                    script.torch = fake_torch
                    bld = script.BlendedLatentDiffusionSDXL(**pipe.components)  # G2
                    bld.args = SimpleNamespace(
                        init_image=str(image_path), mask=str(mask_path), device="cpu"
                    )
                    projection = bld.text_encoder_2.config.projection_dim  # G5
                    bld._get_add_time_ids = functools.partial(
                        bld._get_add_time_ids, text_encoder_projection_dim=projection
                    )
                    bld._read_mask = functools.partial(bld._read_mask, dest_size=(latent, latent))
                    encode = vae.encode
                    vae.encode = lambda x, *a, **k: encode(x.to(vae.dtype), *a, **k)  # G5
                    try:
                        bld.edit_image(
                            blending_percentage=0.25,
                            prompt=[target_prompt(sample)],
                            height=size,
                            width=size,
                            num_inference_steps=STEPS,
                            output_type="np",
                        )
                    finally:
                        del vae.encode
                else:
                    script = load_file(checkout / "scripts/text_editing_SD2.py", "bld_sd2")
                    script.torch = fake_torch
                    bld = script.BlendedLatnetDiffusion.__new__(script.BlendedLatnetDiffusion)
                    bld.args = SimpleNamespace(device="cpu")  # G2: load_models' parts
                    bld.vae, bld.tokenizer = vae, pipe.tokenizer
                    bld.text_encoder, bld.unet = pipe.text_encoder, pipe.unet
                    bld.scheduler = script.DDIMScheduler(
                        beta_start=0.00085,
                        beta_end=0.012,
                        beta_schedule="scaled_linear",
                        clip_sample=False,
                        set_alpha_to_one=False,
                    )
                    bld._read_mask = functools.partial(bld._read_mask, dest_size=(latent, latent))
                    bld.edit_image(
                        str(image_path),
                        str(mask_path),
                        [target_prompt(sample)],
                        height=size,
                        width=size,
                        num_inference_steps=STEPS,
                        blending_percentage=0.25,
                    )
        finally:
            del vae.decode
    return seen["latents"]


def run_case(checkout: Path, case: str) -> Row:
    from partedit_bench.engine.backbones import load_backbone

    name, source, *option = case.split(":")
    backbone = load_backbone(name, dtype="float64")
    sample, image, mask = case_inputs(source)
    shape = (1, 4, backbone.latent_resolution, backbone.latent_resolution)
    kept = STEPS - int(STEPS * 0.25)
    theirs = official(checkout, backbone, sample, image, mask, Tape(shape, kept + 1))
    resize = option[0] if option else "bilinear"
    mine = ours(backbone, sample, image, mask, Tape(shape, kept + 1), resize)
    diff, scale = max_abs(theirs, mine)
    return Row(case, f"final latents, {STEPS} steps", diff, scale, DEVIATIONS.get(resize))


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__, CHECKOUT, CASES).parse_args(argv)
    return report(METHOD, [run_case(Path(args.official), case) for case in args.cases])


if __name__ == "__main__":
    raise SystemExit(main())
