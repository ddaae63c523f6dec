"""Named diffusion backbones -> loaded diffusers components.

Real backbones load from the Hugging Face hub (or its local cache) or from a local folder;
the offline `tiny-*` backbones are built in-process from small configs with fixed-seed random
weights and a real CLIP BPE tokenizer, for tests and a first run on a CPU. Their outputs check
the plumbing, not the methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from partedit_bench.engine.precision import (
    cast_module,
    read_dtype,
    refuse_non_finite,
    resolve_dtype,
    vae_precision,
)
from partedit_bench.engine.registry import BACKBONES, BackboneSpec
from partedit_bench.errors import UserError, did_you_mean
from partedit_bench.store import RANDOM_WEIGHTS_NOTE

SDXL_FP16_VAE = "madebyollin/sdxl-vae-fp16-fix"
MARKER_FILE = "partedit_bench_backbone.json"


@dataclass
class Backbone:
    """A loaded backbone.

    Args:
        name: registry name, or the folder it was loaded from.
        family: `sd` (one text encoder) or `sdxl` (two text encoders, text_time conditioning).
        components: diffusers pipeline components (unet, vae, text_encoder, tokenizer, ...,
            scheduler).
        resolution: native image size in pixels.
        source: where the weights came from (hub id, folder, or `in-process`).
        random_weights: True for the offline tiny backbones.
    """

    name: str
    family: str
    components: dict[str, Any]
    resolution: int
    source: str
    random_weights: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    _fingerprint: str | None = None

    @property
    def unet(self) -> Any:
        return self.components["unet"]

    @property
    def vae(self) -> Any:
        return self.components["vae"]

    @property
    def latent_resolution(self) -> int:
        """The side of the VAE's latents at the native resolution (the VAE halves the size
        at each of its blocks but the last: 1024 -> 128 for SDXL)."""
        return self.resolution // 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.components)
        return self._fingerprint

    @property
    def note(self) -> str:
        return RANDOM_WEIGHTS_NOTE if self.random_weights else ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "resolution": self.resolution,
            "fingerprint": self.fingerprint,
            "random_weights": self.random_weights,
            "dtype": str(self.dtype).split(".")[-1],
            "prediction_type": getattr(
                self.components["scheduler"].config, "prediction_type", "flow"
            ),
        }

    def pipeline(self, cls: type | None = None, **overrides: Any) -> Any:
        """Builds a diffusers pipeline of `cls` (default: the family's text-to-image one)
        sharing this backbone's modules."""
        import inspect

        import diffusers

        if cls is None:
            cls = {
                "sdxl": diffusers.StableDiffusionXLPipeline,
                "flux": diffusers.FluxKontextPipeline
                if "kontext" in self.name.lower()
                else diffusers.FluxPipeline,
                "qwen-image": diffusers.QwenImagePipeline,  # the edit pipelines: qwen_image_edit
            }.get(self.family, diffusers.StableDiffusionPipeline)
        params = inspect.signature(cls).parameters
        kwargs = {k: v for k, v in {**self.components, **overrides}.items() if k in params}
        for optional in ("safety_checker", "feature_extractor", "image_encoder"):
            if optional in params and optional not in kwargs:
                kwargs[optional] = None
        if "requires_safety_checker" in params:
            kwargs["requires_safety_checker"] = False
        pipe = cls(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @property
    def text_width(self) -> int:
        """Width of the text-encoder output space the UNet attends to (SDXL 2048, SD 2.1 1024)."""
        return int(self.unet.config.cross_attention_dim)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, dict[str, Any] | None]:
        """Prompt embeddings (B, 77, d) and, for SDXL, the added conditioning (pooled text
        embeddings and time ids for the native size, no crop)."""
        pipe = self.pipeline()
        if self.family == "sdxl":
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompts,
                device=self.device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
            return embeds, added_conditioning(self, list(pooled[:, None]))
        embeds, _ = pipe.encode_prompt(prompts, self.device, 1, False)
        return embeds, None

    @torch.no_grad()
    def encode_images(self, images: list[Any], resample: Any = None) -> torch.Tensor:
        """PIL images -> VAE latents (mean of the posterior, scaled), at the native size
        (resized with `resample`, default bicubic, when they are not; a method whose reference
        resizes otherwise passes its filter, or resizes itself and calls `encode_pixels`)."""
        import numpy as np
        from PIL import Image

        size = (self.resolution, self.resolution)
        filter_ = Image.Resampling.BICUBIC if resample is None else resample
        arrays = [
            np.asarray(im.convert("RGB").resize(size, filter_), dtype=np.float32) / 127.5 - 1.0
            for im in images
        ]
        return self.encode_pixels(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] -> VAE latents (mean of the posterior, shifted and
        scaled), in the backbone's dtype."""
        vae = self.vae
        with vae_precision(vae):
            pixels = pixels.to(self.device, next(vae.parameters()).dtype)
            latents = vae.encode(pixels).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> list[Any]:
        """VAE latents -> PIL images."""
        import numpy as np
        from PIL import Image

        vae = self.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        with vae_precision(vae):
            scaled = latents.to(next(vae.parameters()).dtype) / vae.config.scaling_factor + shift
            pixels = vae.decode(scaled).sample.float().clamp(-1, 1)
        arrays = ((pixels + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]

    def noise_to(self, latents: torch.Tensor, timestep: int, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps: the forward process the UNet was trained on
        (whatever sampler the backbone ships with)."""
        alphas = self.components["scheduler"].alphas_cumprod.to(latents.device)
        a = alphas[int(timestep)].to(torch.float32)
        return (a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()).to(latents.dtype)

    def save(self, folder: str | Path) -> None:
        """Saves as a diffusers folder that `load_backbone(folder)` reads back identically."""
        import diffusers

        folder = Path(folder)
        pipe_class = None  # the family's text-to-image pipeline
        if self.family == "qwen-image":  # the edit pipeline: it holds the VL processor too
            plus = is_qwen_plus(self)
            pipe_class = (
                diffusers.QwenImageEditPlusPipeline if plus else diffusers.QwenImageEditPipeline
            )
        self.pipeline(pipe_class).save_pretrained(folder, safe_serialization=True)
        marker = {
            "name": self.name,
            "family": self.family,
            "resolution": self.resolution,
            "random_weights": self.random_weights,
        }
        (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def is_qwen_plus(backbone: Backbone) -> bool:
    """Qwen-Image-Edit-2509 ("Plus", `QwenImageEditPlusPipeline`) rather than the first
    release: by registry name, or by the class a loaded folder's index names."""
    if backbone.name.endswith("-plus") or "2509" in backbone.name:
        return True
    index = Path(backbone.source) / "model_index.json"
    return index.is_file() and "Plus" in json.loads(index.read_text()).get("_class_name", "")


def weights_fingerprint(components: dict[str, Any], per_tensor: int = 4096) -> str:
    """A hash identifying the weights of every torch module among `components`.

    Each tensor contributes its name, shape and up to `per_tensor` evenly strided values cast
    to float16 (so fp32 and fp16 copies of the same checkpoint agree, and a 7 GB SDXL is
    fingerprinted in well under a second on a GPU).
    """
    h = hashlib.sha256()
    for comp_name in sorted(components):
        module = components[comp_name]
        if not isinstance(module, torch.nn.Module):
            continue
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // per_tensor)
            values = flat[::step][:per_tensor].to("cpu", torch.float16).contiguous()
            h.update(f"{comp_name}.{name}:{tuple(tensor.shape)}".encode())
            h.update(values.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_backbone_name(name: str) -> None:
    """Raises the unknown-backbone error for a name that is neither registered nor a folder."""
    if name not in BACKBONES and not Path(name).is_dir():
        raise UserError(
            f"unknown backbone '{name}'{did_you_mean(name, BACKBONES)}; "
            "a diffusers folder path also works"
        )


def schedulers_on_cpu(components: dict[str, Any]) -> dict[str, Any]:
    """The components with each scheduler made again from its config on the CPU, where
    diffusers keeps its tables (a scheduler made under `torch.device("cuda")` holds CUDA
    tables, and Euler's `set_timesteps` then fails converting them to NumPy: the random SDXL's
    ip2p and inpainting pipelines did on a GPU)."""
    out = dict(components)
    for key, value in components.items():
        if not isinstance(value, torch.nn.Module) and hasattr(value, "set_timesteps"):
            with torch.device("cpu"):
                out[key] = type(value).from_config(value.config)
    return out


def load_backbone(name: str, device: str | torch.device = "cpu", dtype: str = "auto") -> Backbone:
    """Loads a backbone by registry name or diffusers folder.

    Raises:
        UserError: unknown name, or weights that cannot be found (one sentence saying what was
            looked for and how to get it).
    """
    device = torch.device(device)
    spec = BACKBONES.get(name)
    if spec is not None and spec.builder is not None:
        torch_dtype = resolve_dtype(dtype, device, random_weights=True)
        with torch.device(device) if spec.build_on_device else contextlib.nullcontext():
            components = spec.builder(torch_dtype) if spec.builds_in_dtype else spec.builder()
        components = schedulers_on_cpu(components)
        backbone = Backbone(
            name, spec.family, components, spec.resolution, "in-process", random_weights=True
        )
    elif spec is not None and spec.folder is not None:
        if not (spec.folder / "model_index.json").is_file():
            raise UserError(
                f"backbone '{name}': no trained weights in {spec.folder}; they ship with the "
                "repository (git checkout models/), or retrain them with "
                "`partedit-bench partworld train`"
            )
        backbone, torch_dtype = _load_folder(spec.folder, device, dtype)
        backbone.name = name
    elif spec is not None:
        torch_dtype = resolve_dtype(dtype, device, random_weights=False, family=spec.family)
        components = _load_from_hub(spec, read_dtype(torch_dtype))
        backbone = Backbone(name, spec.family, components, spec.resolution, spec.hub_id or "")
    else:
        check_backbone_name(name)
        backbone, torch_dtype = _load_folder(Path(name), device, dtype)
    modules = [m for m in backbone.components.values() if isinstance(m, torch.nn.Module)]
    if any(next(m.parameters()).dtype != torch_dtype for m in modules):
        # fingerprinted before the cast: the weights' identity does not depend on the run's
        # dtype (bfloat16 keeps fewer mantissa bits than the float16 the fingerprint samples)
        backbone.fingerprint  # noqa: B018 (computed and cached)
    for module in modules:
        module.requires_grad_(False)
        if next(module.parameters()).dtype != torch_dtype:
            cast_module(module, torch_dtype)
        module.to(device)
    backbone.device, backbone.dtype = device, torch_dtype
    vae = backbone.components.get("vae")
    if vae is not None and hasattr(vae, "decoder"):
        vae.decoder.register_forward_pre_hook(refuse_non_finite)
    return backbone


def _load_folder(folder: Path, device: torch.device, dtype: str) -> tuple[Backbone, torch.dtype]:
    from diffusers import DiffusionPipeline

    if not (folder / "model_index.json").is_file():
        raise UserError(
            f"backbone folder {folder} has no model_index.json; expected a diffusers "
            "pipeline folder (save_pretrained layout)"
        )
    marker_path = folder / MARKER_FILE
    marker = json.loads(marker_path.read_text()) if marker_path.is_file() else {}
    random_weights = bool(marker.get("random_weights", False))
    index = json.loads((folder / "model_index.json").read_text())
    pipeline_class = str(index.get("_class_name", ""))
    prefixes = {"Flux": "flux", "QwenImage": "qwen-image"}
    dit = next((f for prefix, f in prefixes.items() if pipeline_class.startswith(prefix)), "")
    torch_dtype = resolve_dtype(dtype, device, random_weights, dit)
    load_dtype = read_dtype(torch_dtype)
    pickled = [p for ext in ("*.bin", "*.pt", "*.ckpt", "*.pth") for p in folder.rglob(ext)]
    if pickled and not any(folder.rglob("*.safetensors")):
        raise UserError(
            f"backbone folder {folder} has only pickle weights ({pickled[0].name}); they are "
            "not loaded, as they can run code: convert the folder to safetensors "
            "(save_pretrained(..., safe_serialization=True))"
        )
    try:
        # safetensors only: a pickle checkpoint is never unpickled
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=load_dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load backbone folder {folder}: {str(exc).splitlines()[0]}"
        ) from exc
    components = {k: v for k, v in pipe.components.items() if v is not None}
    denoiser_class = type(components.get("transformer")).__name__
    if denoiser_class.startswith("Flux"):
        family = "flux"
    elif denoiser_class.startswith("QwenImage"):
        family = "qwen-image"
    else:
        family = "sdxl" if "text_encoder_2" in components else "sd"
    denoiser = components.get("unet") or components["transformer"]
    resolution = int(
        marker.get("resolution")
        or getattr(denoiser.config, "sample_size", 128) * pipe.vae_scale_factor
    )
    name = str(folder)
    return Backbone(
        name, family, components, resolution, str(folder.resolve()), random_weights=random_weights
    ), torch_dtype


def _load_from_hub(spec: BackboneSpec, torch_dtype: torch.dtype) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DiffusionPipeline

    kwargs: dict[str, Any] = {"dtype": torch_dtype, "use_safetensors": True}
    try:
        if spec.family == "sdxl" and torch_dtype == torch.float16:
            kwargs["vae"] = AutoencoderKL.from_pretrained(
                SDXL_FP16_VAE, dtype=torch_dtype, use_safetensors=True
            )
            kwargs["variant"] = "fp16"
        pipe = DiffusionPipeline.from_pretrained(spec.hub_id, **kwargs)
    except Exception as exc:  # hub errors come in many types; all mean "not available here"
        needed = f"{spec.hub_id}" + (f" and {SDXL_FP16_VAE}" if spec.family == "sdxl" else "")
        raise UserError(
            f"backbone '{spec.name}': could not load {needed} from the Hugging Face cache or hub "
            f"({type(exc).__name__}); download it with `hf download {spec.hub_id}` on a machine "
            "with network access, or pass --backbone /path/to/diffusers/folder"
        ) from exc
    return {k: v for k, v in pipe.components.items() if v is not None}


def added_conditioning(backbone: Backbone, pooled: list[Any]) -> dict[str, torch.Tensor] | None:
    """SDXL's added conditioning of a batch: the rows' pooled text embeddings and the time ids
    of the native size without crop (original = target = the backbone's resolution); None on
    the SD family."""
    if backbone.family != "sdxl":
        return None
    res = backbone.resolution
    embeds = torch.cat(pooled)
    time_ids = torch.tensor(
        [[res, res, 0, 0, res, res]], device=backbone.device, dtype=embeds.dtype
    ).repeat(len(pooled), 1)
    return {"text_embeds": embeds, "time_ids": time_ids}
