"""The metrics of other editing benchmarks that need networks, each as PIE-Bench
(cure-lab/PnPInversion, `evaluation/matrics_calculator.py`) or MagicBrush computes it:

- group `pie`: `structure_distance` (DINO ViT-B/8: MSE between the cosine self-similarity
  matrices of the last block's keys of source and edit), `lpips_bg` (LPIPS with SqueezeNet of
  both images times B), `clip_whole` and `clip_edited` (CLIPScore, 100 x max(cos, 0), of the
  whole edit and of the edit times M with the edit prompt, CLIP ViT-L/14).
- group `magicbrush`: `clip_i` (cosine of CLIP ViT-B/32 image embeddings of the edit and the
  true edit), `dino_i` (cosine of DINO ViT-S/16 CLS features of the same), `clip_t` (cosine of
  the edit's CLIP image embedding and the edit prompt's text embedding).

Networks load through the libraries made for them: DINO through timm (the hub's DINO weights
as timm ships them), CLIP through transformers (what torchmetrics' CLIPScore, PIE-Bench's
metric, loads), LPIPS through torchmetrics (PIE-Bench's, with torchvision's SqueezeNet). The
pure functions below take the loaded networks; `load_networks` loads them (or `tiny`: small
random-weight twins built in-process, for tests: their numbers mean nothing).

PIE-Bench's conventions kept: images as uint8 values, the structure distance's DINO input is
the 0-255 image resized (shortest side 224, antialiased bilinear) and normalized with ImageNet's
mean and std as if it were in [0, 1] (as the reference does); LPIPS of the images times B in
[-1, 1]; CLIPScore of `uint8(image * mask)`. Not kept: PIE-Bench marks a 1-pixel border of
every mask as edited (an annotation fix of its dataset); the suite's masks are used as they are.
A non-square image gives DINO a non-square grid, whose position embeddings timm interpolates
its own way (DINO's recipe differs slightly): parity is measured on square images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from partedit_bench.errors import UserError

CHECKPOINTS = {
    "dino_b8": "timm/vit_base_patch8_224.dino",
    "dino_s16": "timm/vit_small_patch16_224.dino",
    "clip_l14": "openai/clip-vit-large-patch14",
    "clip_b32": "openai/clip-vit-base-patch32",
    "lpips": "torchvision squeezenet1_1 (IMAGENET1K_V1) + torchmetrics' LPIPS v0.1 linear layers",
}
PIE_METRICS = ("structure_distance", "lpips_bg", "clip_whole", "clip_edited")
MAGICBRUSH_METRICS = ("clip_i", "clip_t", "dino_i")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The preprocessing the group manifests record (a change of it recomputes the rows).
PREPROCESS = (
    "images as their 8-bit values; structure_distance: 0-255 image resized (shortest side 224, "
    "at most 480, antialiased bilinear), ImageNet mean/std as if in [0, 1], DINO's last-block "
    "keys, grid cropped to whole patches; lpips_bg: both images times B in [-1, 1]; CLIP "
    "scores: uint8(image x mask) through the CLIP processor (CLIPScore, 100 x max(cos, 0)); "
    "dino_i: 224 x 224 bicubic, ImageNet mean/std, CLS of the final norm; masks as given "
    "(PIE-Bench's 1-pixel border not added)"
)


def _uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) in [0, 1] -> (3, H, W) float32 holding the 0-255 values (exact for images
    read from 8-bit files)."""
    return torch.from_numpy(np.round(np.asarray(image) * 255.0).astype(np.float32)).permute(2, 0, 1)


def _last_keys(vit: Any, pixels: torch.Tensor) -> torch.Tensor:
    """The last block's keys, (heads, tokens, head_dim), read from its qkv projection."""
    seen: list[torch.Tensor] = []
    handle = vit.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        vit(pixels)
    finally:
        handle.remove()
    qkv = seen[0][0]  # (tokens, 3 * dim)
    heads = vit.blocks[-1].attn.num_heads
    tokens = qkv.shape[0]
    return qkv.reshape(tokens, 3, heads, -1).permute(1, 2, 0, 3)[1]


def keys_self_similarity(vit: Any, image: torch.Tensor) -> torch.Tensor:
    """Cosine self-similarity of the last block's keys (heads concatenated), (tokens, tokens),
    of a (3, H, W) image of 0-255 values prepared as PIE-Bench prepares it."""
    from torchvision.transforms import functional as TF

    x = TF.resize(image, 224, max_size=480, antialias=True)
    x = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    patch = vit.patch_embed.patch_size[0]  # DINO's patch convolution drops what is left over
    x = x[:, : x.shape[1] // patch * patch, : x.shape[2] // patch * patch]
    keys = _last_keys(vit, x[None])
    heads, tokens, dim = keys.shape
    flat = keys.transpose(0, 1).reshape(tokens, heads * dim)
    norm = flat.norm(dim=1, keepdim=True)
    return (flat @ flat.T) / torch.clamp(norm @ norm.T, min=1e-8)


@torch.no_grad()
def structure_distance(vit: Any, source: np.ndarray, edited: np.ndarray) -> float:
    """PIE-Bench's structure distance (whole images; lower is closer)."""
    a = keys_self_similarity(vit, _uint8_tensor(source))
    b = keys_self_similarity(vit, _uint8_tensor(edited))
    return float(torch.nn.functional.mse_loss(b, a))


@torch.no_grad()
def lpips_bg(lpips: Any, source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PIE-Bench's `lpips_unedit_part`: LPIPS of both images times B, in [-1, 1]."""
    keep = (~mask.astype(bool))[..., None].astype(np.float32)
    if not keep.any():
        return float("nan")
    a = torch.from_numpy(source.astype(np.float32) * keep).permute(2, 0, 1)[None]
    b = torch.from_numpy(edited.astype(np.float32) * keep).permute(2, 0, 1)[None]
    return float(lpips(a * 2 - 1, b * 2 - 1).squeeze())


def _features(clip: tuple[Any, Any], image: Any = None, text: str | None = None) -> torch.Tensor:
    """A unit CLIP embedding of a (3, H, W) uint8 image or of a text, preprocessed as
    torchmetrics' CLIPScore does (the processor's resize, crop and normalization; text padded
    and cut at the model's positions)."""
    model, processor = clip
    if image is not None:
        pixels = processor(images=[image], return_tensors="pt", padding=True)["pixel_values"]
        out = model.get_image_features(pixel_values=pixels)
    else:
        tokens = processor(text=[text], return_tensors="pt", padding=True)
        most = model.config.text_config.max_position_embeddings
        out = model.get_text_features(
            input_ids=tokens["input_ids"][..., :most],
            attention_mask=tokens["attention_mask"][..., :most],
        )
    out = getattr(out, "pooler_output", out)  # transformers 5 returns an output object
    return out[0] / out[0].norm(p=2)


def _uint8_chw(image: np.ndarray, mask: Any = None) -> torch.Tensor:
    pixels = np.round(np.asarray(image) * 255.0)
    if mask is not None:
        pixels = pixels * np.asarray(mask, np.float64)[..., None]
    return torch.from_numpy(pixels.astype(np.uint8)).permute(2, 0, 1)


@torch.no_grad()
def clip_score(clip: tuple[Any, Any], image: np.ndarray, text: str, mask: Any = None) -> float:
    """CLIPScore as torchmetrics computes it for PIE-Bench: 100 x max(cos(image, text), 0) of
    `uint8(image x mask)` (mask: the region kept, or None for the whole image)."""
    cos = _features(clip, image=_uint8_chw(image, mask)) @ _features(clip, text=text)
    return float(torch.clamp(100 * cos, min=0))


@torch.no_grad()
def clip_i(clip: tuple[Any, Any], edited: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush's CLIP-I: cosine of the CLIP image embeddings of the edit and the true edit."""
    a = _features(clip, image=_uint8_chw(edited))
    return float(a @ _features(clip, image=_uint8_chw(target)))


@torch.no_grad()
def clip_t(clip: tuple[Any, Any], edited: np.ndarray, text: str) -> float:
    """MagicBrush's CLIP-T: cosine of the edit's CLIP image embedding and the text's."""
    return float(_features(clip, image=_uint8_chw(edited)) @ _features(clip, text=text))


@torch.no_grad()
def dino_i(vit: Any, edited: np.ndarray, target: np.ndarray) -> float:
    """MagicBrush's DINO-I: cosine of the DINO CLS features of the edit and the true edit
    (images resized to 224 x 224, bicubic, ImageNet normalization)."""
    from torchvision.transforms import functional as TF

    def cls(image: np.ndarray) -> torch.Tensor:
        x = _uint8_tensor(image) / 255.0
        x = TF.resize(x, [224, 224], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        feature = vit(TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)[None])[0]
        return feature / feature.norm()

    return float(cls(edited) @ cls(target))


@dataclass
class Networks:
    """The loaded networks of the `pie` and `magicbrush` groups, and what they are."""

    dino_b8: Any = None
    dino_s16: Any = None
    clip_l14: Any = None
    clip_b32: Any = None
    lpips: Any = None
    identity: dict[str, Any] = field(default_factory=dict)
    random_weights: bool = False


def tiny_vit(patch: int, seed: int) -> Any:
    """A 2-block ViT of DINO's layout (qkv bias, LayerNorm eps 1e-6, CLS token), random."""
    import timm

    torch.manual_seed(seed)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=224,
        patch_size=patch,
        embed_dim=64,
        depth=2,
        num_heads=4,
        num_classes=0,
        dynamic_img_size=True,
    )
    return model.eval()


def tiny_clip(seed: int) -> tuple[Any, Any]:
    """A small CLIPModel with the real CLIP BPE tokenizer and image processor, random."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from partedit_bench.engine.clip_bpe import clip_tokenizer

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, vocab_size=49408),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=224, patch_size=32),
        projection_dim=16,
    )  # fmt: skip
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=clip_tokenizer())
    return CLIPModel(config).eval(), processor


def tiny_lpips(seed: int) -> Any:
    """torchmetrics' LPIPS with a random SqueezeNet (its shipped linear layers kept)."""
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    torch.manual_seed(seed)
    return _NoTrainLpips(net="squeeze", pretrained=True, pnet_rand=True).eval()


def load_networks(groups: list[str], kind: str = "real", device: str = "cpu") -> Networks:
    """The networks the groups need: `real` (the checkpoints of CHECKPOINTS, from the Hugging
    Face and torch caches first, then the network), `tiny` (small random twins, tests only) or
    `random` (DINO at its real size with random weights: the parity harness)."""
    pie, magic = "pie" in groups, "magicbrush" in groups
    if kind == "tiny":
        nets = Networks(
            dino_b8=tiny_vit(8, 0) if pie else None,
            lpips=tiny_lpips(1) if pie else None,
            clip_l14=tiny_clip(4) if pie else None,
            dino_s16=tiny_vit(16, 3) if magic else None,
            clip_b32=tiny_clip(2) if magic else None,
            random_weights=True,
        )
        nets.identity = {"networks": "tiny (random weights: the plumbing, not the metric)"}
        return nets
    if kind == "random":  # DINO at its real size (the reference code assumes it), random
        nets = load_networks(groups, "tiny", device)
        torch.manual_seed(5)
        for key, attr in (("dino_b8", "dino_b8"), ("dino_s16", "dino_s16")):
            if getattr(nets, attr) is not None:
                name = CHECKPOINTS[key].removeprefix("timm/")
                setattr(nets, attr, _random_timm(name))
        nets.identity = {
            "networks": "random (DINO at its real size, CLIP tiny, LPIPS's SqueezeNet random)"
        }
        return nets
    if kind != "real":
        raise UserError(f"--networks {kind!r}: real, random or tiny")
    nets = Networks()
    if pie:
        nets.dino_b8 = _timm("dino_b8")
        nets.lpips = _lpips()
        nets.clip_l14 = _transformers_clip("clip_l14")
    if magic:
        nets.dino_s16 = _timm("dino_s16")
        nets.clip_b32 = _transformers_clip("clip_b32")
    nets.identity = {k: CHECKPOINTS[k] for k, v in vars(nets).items() if k in CHECKPOINTS and v}
    return nets


def _missing(key: str, exc: Exception) -> UserError:
    group = "pie" if key in ("dino_b8", "clip_l14", "lpips") else "magicbrush"
    return UserError(
        f"{CHECKPOINTS[key]} (for the {group} metrics) is not in the local cache and could not "
        f"be downloaded ({type(exc).__name__}); fetch it once where there is a network "
        f"(`huggingface-cli download {CHECKPOINTS[key].split(' ')[0]}`), or leave the group out"
    )


def _cache_first(load: Any) -> Any:
    """`load()` from the local caches alone (no network), then, when the hub can be reached,
    from the hub; its retry logs kept off the terminal (as Alpha-CLIP's OpenAI weights)."""
    import logging

    from huggingface_hub import constants

    from partedit_bench.metrics.alpha_clip import _hub_reachable

    offline = constants.HF_HUB_OFFLINE
    logging.disable(logging.ERROR)
    try:
        constants.HF_HUB_OFFLINE = True
        try:
            return load()
        except Exception:
            if offline or not _hub_reachable():
                raise
        constants.HF_HUB_OFFLINE = offline
        return load()
    finally:
        constants.HF_HUB_OFFLINE = offline
        logging.disable(logging.NOTSET)


def _random_timm(name: str) -> Any:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True).eval()


def _timm(key: str) -> Any:
    import timm

    name = CHECKPOINTS[key].removeprefix("timm/")
    try:
        return _cache_first(
            lambda: timm.create_model(name, pretrained=True, num_classes=0, dynamic_img_size=True)
        ).eval()
    except Exception as exc:  # hub errors of every kind: one sentence
        raise _missing(key, exc) from exc


def _transformers_clip(key: str) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    try:
        model = _cache_first(lambda: CLIPModel.from_pretrained(CHECKPOINTS[key]))
        return model.eval(), _cache_first(lambda: CLIPProcessor.from_pretrained(CHECKPOINTS[key]))
    except Exception as exc:
        raise _missing(key, exc) from exc


def _lpips() -> Any:
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    try:
        return _NoTrainLpips(net="squeeze").eval()
    except Exception as exc:
        raise _missing("lpips", exc) from exc
