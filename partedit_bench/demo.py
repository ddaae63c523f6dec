"""`partedit-bench demo`: part edits in the browser (gradio, the `demo` extra), with the
official demo's inputs (original prompt, subject, edit, part, seed; advanced: steps, guidance,
t_e, cross-replace fraction) and an image upload for real images. No negative prompt: the
official demo's box is never passed to its pipeline (`model.py`, the argument commented out),
and PartEdit's released pipeline edits with the empty one. It calls
`partedit_bench.editing.edit`, as the `edit` command does, on one backbone loaded at start
(`partworld-sd` by default: offline, with the shipped tokens)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from partedit_bench.data.schema import CANONICAL_PARTS
from partedit_bench.errors import UserError

#: The demo's examples: (original prompt, subject, edit, part) the default backbone, partworld-sd
#: (trained on PartWorld's procedural scenes), draws and edits; the first fills the form. Mean
#: absolute change of the edit (in [0, 1]) inside / outside the method's mask (half its range),
#: seeds 0, 1, 2 at the demo's defaults, measured on the CPU: person 0.118 / 0.024, 0.104 /
#: 0.015, 0.092 / 0.013; car 0.038 / 0.016 ...; horse 0.019 / 0.008 ...; cat 0.023 / 0.011 ...
#: On SDXL the official demo's ("a photo of a man", "man", "a robotic", humanoid-head) is the one.
EXAMPLES = [
    ("a photo of a person wearing a white shirt in a studio", "person", "a purple",
     "humanoid-head"),
    ("a photo of a blue car in a desert", "car", "a red", "car-body"),
    ("a photo of a gray horse on a beach", "horse", "a red", "animal-head"),
    ("a photo of a white cat at night", "cat", "an orange", "animal-head"),
]  # fmt: skip
EXAMPLE = dict(zip(("original", "subject", "edit", "part"), EXAMPLES[0], strict=True))
#: images smaller than this are shown enlarged (nearest neighbour: the pixels as they are);
#: the download keeps the edit's own size
SHOWN = 256


def enlarged(image: Any) -> Any:
    """`image` scaled up by a whole factor to at least SHOWN pixels (for display only)."""
    if image is None or max(image.size) >= SHOWN:
        return image
    from PIL import Image

    factor = -(-SHOWN // max(image.size))
    return image.resize((image.size[0] * factor, image.size[1] * factor), Image.Resampling.NEAREST)


def edit_prompt(original: str, subject: str, edit: str, part: str) -> str:
    """The official demo's prompt pair: the subject in the original prompt becomes
    "<subject> with <edit> <part>" (appended when the subject is not in the prompt)."""
    original, subject, edit = original.strip(), subject.strip(), edit.strip()
    if not original:
        raise UserError("the original prompt is empty")
    if not edit:
        raise UserError("the edit is empty (e.g. 'a robotic')")
    phrase = f"with {edit} <{part}>"
    words = original.split()
    if subject and subject in words:
        at = len(words) - 1 - words[::-1].index(subject)
        return " ".join([*words[: at + 1], phrase, *words[at + 1 :]])
    return f"{original} {phrase}"


def build_app(backbone: Any) -> Any:
    """The gradio Blocks app editing on `backbone` (a loaded Backbone)."""
    import gradio as gr

    from partedit_bench.editing import edit, overlay

    outputs_dir = Path(tempfile.mkdtemp(prefix="partedit-demo-"))
    import atexit
    import shutil

    atexit.register(shutil.rmtree, outputs_dir, ignore_errors=True)  # nothing left behind

    def run(
        image: Any,
        original: str,
        subject: str,
        edit_text: str,
        part: str,
        seed: float,
        random_seed: bool,
        steps: float,
        guidance: float,
        t_e: float,
        cross_replace: float,
        progress: Any = gr.Progress(),  # noqa: B008 (gradio's progress tracker)
    ) -> tuple[Any, Any, Any, str, str, int]:
        if random_seed:
            import random

            seed = random.randrange(2**31)
        try:
            prompt = edit_prompt(original, subject, edit_text, part)
            options = {
                "steps": int(steps),
                "guidance": float(guidance),
                "t_e": min(int(t_e), int(steps)),
                "cross_replace": float(cross_replace),
            }
            progress(0, desc="editing")
            calls = int(steps) * (1 if image is None else 2)  # (an inversion doubles them)

            def step(n: int) -> None:
                progress(min(n / calls, 1.0), desc=f"denoising: {n} UNet calls")

            result = edit(
                image,
                prompt=original.strip(),
                edit_prompt=prompt,
                backbone=backbone,
                seed=int(seed),
                options=options,
                on_step=step,
            )
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        shown = overlay(result.image, result.mask) if result.mask is not None else None
        path = outputs_dir / f"edited-seed{int(seed)}-{len(list(outputs_dir.iterdir()))}.png"
        result.image.save(path)
        status = (
            f"{'generated, then edited' if result.synthetic else 'edited'} in "
            f"{result.seconds:.1f} s on {result.backbone}, seed {int(seed)}: `{prompt}`"
        )
        return (
            enlarged(result.image),
            enlarged(result.source),
            enlarged(shown),
            str(path),
            status,
            int(seed),
        )

    with gr.Blocks(title="PartEdit") as app:
        gr.Markdown(
            f"# PartEdit: part edits with part tokens\nBackbone: `{backbone.name}`"
            + (f" ({backbone.note})" if backbone.note else "")
            + ". Leave the image empty to generate the source from the prompt and seed."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="your image (optional)", elem_id="image")
                original = gr.Textbox(
                    EXAMPLE["original"], label="original prompt", elem_id="original"
                )
                subject = gr.Textbox(EXAMPLE["subject"], label="subject", elem_id="subject")
                edit_box = gr.Textbox(EXAMPLE["edit"], label="edit", elem_id="edit")
                part = gr.Dropdown(
                    list(CANONICAL_PARTS), value=EXAMPLE["part"], label="part", elem_id="part"
                )
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                    random_seed = gr.Checkbox(False, label="random seed", elem_id="random-seed")
                with gr.Accordion("advanced", open=False):
                    steps = gr.Slider(1, 50, 25, step=1, label="steps", elem_id="steps")
                    guidance = gr.Slider(0.1, 30, 7.5, label="guidance", elem_id="guidance")
                    t_e = gr.Slider(1, 50, 25, step=1, label="editing steps t_e", elem_id="t_e")
                    cross = gr.Slider(0, 1, 0.4, label="cross-replace fraction", elem_id="cross")
                button = gr.Button("Edit", variant="primary", elem_id="run")
            with gr.Column():
                edited = gr.Image(label="edited", elem_id="edited", format="png")
                source = gr.Image(label="source", elem_id="source", format="png")
                mask = gr.Image(
                    label="mask over the edit (stretched to its range, outlined at half of it)",
                    elem_id="mask",
                )
                download = gr.File(label="download", elem_id="download")
                status = gr.Markdown(elem_id="status")
        gr.Examples(
            [list(e) for e in EXAMPLES], [original, subject, edit_box, part], label="examples"
        )
        button.click(
            run,
            [image, original, subject, edit_box, part, seed, random_seed, steps, guidance, t_e,
             cross],
            [edited, source, mask, download, status, seed],
        )  # fmt: skip
    return app


def launch(
    backbone_name: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "auto",
    dtype: str = "auto",
    share: bool = False,
) -> int:
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "the demo needs gradio: pip install -e '.[demo]' (or pip install gradio)"
        ) from exc
    from partedit_bench.editing import cached_backbone

    backbone = cached_backbone(backbone_name, device, dtype)
    app = build_app(backbone)
    print(f"demo: {backbone.name} on {backbone.device}; serving http://{host}:{port}", flush=True)
    app.queue().launch(server_name=host, server_port=port, share=share, show_error=True)
    return 0
