"""`partedit-bench demo`: part edits in the browser (gradio, the `demo` extra), with the
official demo's inputs (original prompt, subject, edit, part, seed; advanced: steps, guidance,
t_e, cross-replace fraction) and an image upload for real images. It calls
`partedit_bench.editing.edit`, as the `edit` command does, on one backbone loaded at start
(`partworld-sd` by default: offline, with the shipped tokens)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from partedit_bench.data.schema import CANONICAL_PARTS
from partedit_bench.errors import UserError

EXAMPLE = {"original": "a photo of a man", "subject": "man", "edit": "a robotic"}


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

    def run(
        image: Any,
        original: str,
        subject: str,
        edit_text: str,
        part: str,
        seed: float,
        steps: float,
        guidance: float,
        t_e: float,
        cross_replace: float,
    ) -> tuple[Any, Any, Any, str, str]:
        try:
            prompt = edit_prompt(original, subject, edit_text, part)
            options = {
                "steps": int(steps),
                "guidance": float(guidance),
                "t_e": min(int(t_e), int(steps)),
                "cross_replace": float(cross_replace),
            }
            result = edit(
                image,
                prompt=original.strip(),
                edit_prompt=prompt,
                backbone=backbone,
                seed=int(seed),
                options=options,
            )
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        shown = overlay(result.image, result.mask) if result.mask is not None else None
        path = outputs_dir / f"edited-seed{int(seed)}-{len(list(outputs_dir.iterdir()))}.png"
        result.image.save(path)
        status = (
            f"{'generated, then edited' if result.synthetic else 'edited'} in "
            f"{result.seconds:.1f} s on {result.backbone}: `{prompt}`"
        )
        return result.image, result.source, shown, str(path), status

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
                    list(CANONICAL_PARTS), value="humanoid-head", label="part", elem_id="part"
                )
                seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                with gr.Accordion("advanced", open=False):
                    steps = gr.Slider(1, 50, 25, step=1, label="steps", elem_id="steps")
                    guidance = gr.Slider(0.1, 30, 7.5, label="guidance", elem_id="guidance")
                    t_e = gr.Slider(1, 50, 25, step=1, label="editing steps t_e", elem_id="t_e")
                    cross = gr.Slider(0, 1, 0.4, label="cross-replace fraction", elem_id="cross")
                button = gr.Button("Edit", variant="primary", elem_id="run")
            with gr.Column():
                edited = gr.Image(label="edited", elem_id="edited", format="png")
                source = gr.Image(label="source", elem_id="source", format="png")
                mask = gr.Image(label="mask (averaged, over the edit)", elem_id="mask")
                download = gr.File(label="download", elem_id="download")
                status = gr.Markdown(elem_id="status")
        button.click(
            run,
            [image, original, subject, edit_box, part, seed, steps, guidance, t_e, cross],
            [edited, source, mask, download, status],
        )
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
