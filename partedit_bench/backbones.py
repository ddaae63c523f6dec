"""Named diffusion backbones -> loaded diffusers components.

Real backbones load from the Hugging Face hub (or its local cache) or from a local folder;
the offline `tiny-*` backbones are built in-process from small configs with fixed-seed random
weights and a real CLIP BPE tokenizer, for tests and a first run on a CPU. Their outputs check
the plumbing, not the methods.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

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
            "prediction_type": self.components["scheduler"].config.prediction_type,
        }

    def pipeline(self, cls: type | None = None, **overrides: Any) -> Any:
        """Builds a diffusers pipeline of `cls` (default: the family's text-to-image one)
        sharing this backbone's modules."""
        import inspect

        import diffusers

        if cls is None:
            cls = (
                diffusers.StableDiffusionXLPipeline
                if self.family == "sdxl"
                else diffusers.StableDiffusionPipeline
            )
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
            size = [self.resolution, self.resolution]
            time_ids = torch.tensor(
                [size + [0, 0] + size], device=self.device, dtype=embeds.dtype
            ).repeat(len(prompts), 1)
            return embeds, {"text_embeds": pooled, "time_ids": time_ids}
        embeds, _ = pipe.encode_prompt(prompts, self.device, 1, False)
        return embeds, None

    @torch.no_grad()
    def encode_images(self, images: list[Any]) -> torch.Tensor:
        """PIL images -> VAE latents (mean of the posterior, scaled), at the native size."""
        import numpy as np
        from PIL import Image

        size = (self.resolution, self.resolution)
        arrays = [
            np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
            / 127.5
            - 1.0
            for im in images
        ]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        vae = self.vae
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
        folder = Path(folder)
        self.pipeline().save_pretrained(folder, safe_serialization=True)
        marker = {
            "name": self.name,
            "family": self.family,
            "resolution": self.resolution,
            "random_weights": self.random_weights,
        }
        (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


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
            h.update(values.numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# A real CLIP tokenizer, written from the BPE vocabulary shipped inside open_clip_torch.


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def clip_tokenizer_files(folder: Path) -> Path:
    """Writes CLIP's `vocab.json` and `merges.txt` (49408 tokens) from open_clip's BPE file."""
    from open_clip.tokenizer import default_bpe

    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if vocab_path.is_file() and merges_path.is_file():
        return folder
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    base = list(_bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    from partedit_bench.io import atomic_write_bytes

    atomic_write_bytes(merges_path, ("#version: 0.2\n" + "\n".join(merges) + "\n").encode())
    atomic_write_bytes(vocab_path, json.dumps({t: i for i, t in enumerate(vocab)}).encode())
    return folder


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> Any:
    """A real CLIP BPE tokenizer; SDXL's second tokenizer (and SD 2.x's) pads with `!`."""
    from transformers import CLIPTokenizer

    from partedit_bench.data.suites import cache_root

    folder = clip_tokenizer_files(cache_root() / "clip-bpe")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        pad_token=pad_token,
        model_max_length=77,
    )


# ---------------------------------------------------------------------------------------
# Tiny offline backbones.


def _tiny_text_encoder(seed: int, with_projection: bool = False) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    return model.eval()


def _tiny_vae(seed: int) -> Any:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
    ).eval()  # type: ignore[attr-defined]


def build_tiny_sd(prediction_type: str = "epsilon", in_channels: int = 4) -> dict[str, Any]:
    """An SD 2.1-shaped model: 3 cross-attention levels (latent 16, 8, 4 at 64 px), linear
    projections, one 32-wide CLIP text encoder, DDIM scheduler with SD's betas."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        cross_attention_dim=32,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3,
        up_block_types=("CrossAttnUpBlock2D",) * 3,
    ).eval()  # type: ignore[attr-defined]
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    return {
        "unet": unet,
        "vae": _tiny_vae(1),
        "text_encoder": _tiny_text_encoder(2),
        "tokenizer": clip_tokenizer(pad_token="!"),
        "scheduler": scheduler,
    }


def build_tiny_sdxl(in_channels: int = 4) -> dict[str, Any]:
    """An SDXL-shaped model: levels without / with / with cross-attention (latent 16, 8, 4 at
    64 px), 1, 2 and 4 transformer blocks, two CLIP text encoders (32 + 32 wide, the second
    with a projection), text_time conditioning, Euler scheduler."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        norm_num_groups=32,
        cross_attention_dim=64,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    ).eval()  # type: ignore[attr-defined]
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return {
        "unet": unet,
        "vae": _tiny_vae(1),
        "text_encoder": _tiny_text_encoder(2),
        "text_encoder_2": _tiny_text_encoder(3, with_projection=True),
        "tokenizer": clip_tokenizer(),
        "tokenizer_2": clip_tokenizer(pad_token="!"),
        "scheduler": scheduler,
    }


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    resolution: int
    description: str
    hub_id: str | None = None
    builder: Callable[[], dict[str, Any]] | None = None
    folder: Path | None = None  # weights shipped in this repository


#: The trained PartWorld model shipped with the repository (see its model card).
PARTWORLD_FOLDER = Path(__file__).resolve().parents[1] / "models" / "partworld-sd"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "partworld-sd",
            "sd",
            64,
            "offline SD-family model trained on PartWorld (default)",
            folder=PARTWORLD_FOLDER,
        ),
        BackboneSpec(
            "sdxl",
            "sdxl",
            1024,
            "Stable Diffusion XL base 1.0 (fp16-fixed VAE)",
            hub_id="stabilityai/stable-diffusion-xl-base-1.0",
        ),
        BackboneSpec(
            "sd21",
            "sd",
            512,
            "Stable Diffusion 2.1 base (epsilon, 512 px)",
            hub_id="stabilityai/stable-diffusion-2-1-base",
        ),
        BackboneSpec(
            "tiny-sd", "sd", 64, "offline SD-shaped model, random weights", builder=build_tiny_sd
        ),
        BackboneSpec(
            "tiny-sd-v",
            "sd",
            64,
            "tiny-sd with v-prediction, random weights",
            builder=lambda: build_tiny_sd(prediction_type="v_prediction"),
        ),
        BackboneSpec(
            "tiny-sdxl",
            "sdxl",
            64,
            "offline SDXL-shaped model, random weights",
            builder=build_tiny_sdxl,
        ),
        BackboneSpec(
            "sd-ip2p",
            "sd",
            512,
            "InstructPix2Pix (SD 1.5 based, 8-channel UNet)",
            hub_id="timbrooks/instruct-pix2pix",
        ),
        BackboneSpec(
            "sdxl-ip2p",
            "sdxl",
            768,
            "InstructPix2Pix SDXL (8-channel UNet)",
            hub_id="diffusers/sdxl-instructpix2pix-768",
        ),
        BackboneSpec(
            "sdxl-inpaint",
            "sdxl",
            1024,
            "SDXL inpainting 0.1 (9-channel UNet)",
            hub_id="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        ),
        BackboneSpec(
            "tiny-sd-ip2p",
            "sd",
            64,
            "tiny-sd with an 8-channel UNet, random weights",
            builder=lambda: build_tiny_sd(in_channels=8),
        ),
        BackboneSpec(
            "tiny-sdxl-ip2p",
            "sdxl",
            64,
            "tiny-sdxl with an 8-channel UNet, random weights",
            builder=lambda: build_tiny_sdxl(in_channels=8),
        ),
        BackboneSpec(
            "tiny-sdxl-inpaint",
            "sdxl",
            64,
            "tiny-sdxl with a 9-channel UNet, random weights",
            builder=lambda: build_tiny_sdxl(in_channels=9),
        ),
    )
}

#: Special checkpoints a method needs, per run backbone (by name, then by family).
SPECIAL_CHECKPOINTS: dict[str, dict[str, str]] = {
    "ip2p": {
        "tiny-sd": "tiny-sd-ip2p",
        "tiny-sd-v": "tiny-sd-ip2p",
        "tiny-sdxl": "tiny-sdxl-ip2p",
        "sd": "sd-ip2p",
        "sdxl": "sdxl-ip2p",
    },
    "inpaint": {"tiny-sdxl": "tiny-sdxl-inpaint", "sdxl": "sdxl-inpaint"},
}


def load_special(backbone: Backbone, kind: str) -> Backbone:
    """The special checkpoint (`ip2p`, `inpaint`) that goes with a run's backbone, on its device
    and dtype.

    Raises:
        MethodUnavailable: no such checkpoint for this backbone, or its weights are missing.
    """
    from partedit_bench.method_api import MethodUnavailable

    table = SPECIAL_CHECKPOINTS.get(kind, {})
    own = Path(backbone.name).name
    if own in BACKBONES and BACKBONES[own].folder is not None and own not in table:
        # a model trained here: the family's public checkpoint belongs to other weights
        raise MethodUnavailable(f"no {kind} checkpoint was trained for {own}")
    name = table.get(own) or table.get(backbone.family)
    if name is None:
        raise MethodUnavailable(f"no {kind} checkpoint for {backbone.family} backbones")
    try:
        dtype = {
            torch.float16: "float16",
            torch.bfloat16: "bfloat16",
            torch.float64: "float64",
        }.get(backbone.dtype, "float32")
        return load_backbone(name, backbone.device, dtype)
    except UserError as exc:
        raise MethodUnavailable(str(exc)) from exc


def resolve_dtype(dtype: str, device: torch.device, random_weights: bool) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" and not random_weights else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "float64": torch.float64,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}'{did_you_mean(dtype, table)}")
    return table[dtype]


def check_backbone_name(name: str) -> None:
    """Raises the unknown-backbone error for a name that is neither registered nor a folder."""
    if name not in BACKBONES and not Path(name).is_dir():
        raise UserError(
            f"unknown backbone '{name}'{did_you_mean(name, BACKBONES)}; "
            "a diffusers folder path also works"
        )


def load_backbone(name: str, device: str | torch.device = "cpu", dtype: str = "auto") -> Backbone:
    """Loads a backbone by registry name or diffusers folder.

    Raises:
        UserError: unknown name, or weights that cannot be found (one sentence saying what was
            looked for and how to get it).
    """
    device = torch.device(device)
    spec = BACKBONES.get(name)
    if spec is not None and spec.builder is not None:
        components = spec.builder()
        torch_dtype = resolve_dtype(dtype, device, random_weights=True)
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
        torch_dtype = resolve_dtype(dtype, device, random_weights=False)
        components = _load_from_hub(spec, torch_dtype)
        backbone = Backbone(name, spec.family, components, spec.resolution, spec.hub_id or "")
    else:
        check_backbone_name(name)
        backbone, torch_dtype = _load_folder(Path(name), device, dtype)
    for module in backbone.components.values():
        if isinstance(module, torch.nn.Module):
            module.to(device)
            if next(module.parameters()).dtype != torch_dtype:
                module.to(torch_dtype)
            module.requires_grad_(False)
    backbone.device, backbone.dtype = device, torch_dtype
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
    torch_dtype = resolve_dtype(dtype, device, random_weights)
    pickled = [p for ext in ("*.bin", "*.pt", "*.ckpt", "*.pth") for p in folder.rglob(ext)]
    if pickled and not any(folder.rglob("*.safetensors")):
        raise UserError(
            f"backbone folder {folder} has only pickle weights ({pickled[0].name}); they are "
            "not loaded, as they can run code: convert the folder to safetensors "
            "(save_pretrained(..., safe_serialization=True))"
        )
    try:
        # safetensors only: a pickle checkpoint is never unpickled
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load backbone folder {folder}: {str(exc).splitlines()[0]}"
        ) from exc
    components = {k: v for k, v in pipe.components.items() if v is not None}
    family = "sdxl" if "text_encoder_2" in components else "sd"
    resolution = int(
        marker.get("resolution") or components["unet"].config.sample_size * pipe.vae_scale_factor
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
