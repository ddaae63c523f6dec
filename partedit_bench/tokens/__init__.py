"""PartEdit part tokens: the file format, import of the official tokens, training, and how
well a token localizes its part (held-out mIoU).

A token is E in R^{2 x d}: [background, part] in the text-encoder OUTPUT space the UNet's
cross-attention reads (d = 2048 for SDXL, 1024 for SD 2.1). Files are safetensors with the key
`embedding` and the metadata (JSON) under `partedit_bench`: backbone name and weight
fingerprint, width, layers, timesteps, loss, steps, seed, mode, held-out mIoU and references.
Runs look for `benchmark_data/tokens/<backbone>/<part>.safetensors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from partedit_bench.data.schema import CANONICAL_PARTS
from partedit_bench.engine.attention import decoder_cross_attention_layers
from partedit_bench.errors import UserError


def tokens_root() -> Path:
    from partedit_bench.paths import data_root

    return data_root() / "tokens"


def token_path(backbone_name: str, part: str, root: Path | None = None) -> Path:
    return (root or tokens_root()) / Path(backbone_name.rstrip("/")).name / f"{part}.safetensors"


@dataclass
class PartToken:
    """E (2, d) = [background, part] and its metadata."""

    embedding: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def part(self) -> str:
        return str(self.meta.get("part", ""))

    @property
    def layers(self) -> list[str]:
        return list(self.meta.get("layers") or [])

    def save(self, path: str | Path) -> Path:
        """Writes the token atomically (a reader never sees half a file)."""
        from safetensors.torch import save

        from partedit_bench.io import atomic_write_bytes

        path = Path(path)
        data = save(
            {"embedding": self.embedding.detach().float().cpu().contiguous()},
            metadata={"partedit_bench": json.dumps(self.meta, sort_keys=True)},
        )
        atomic_write_bytes(path, data)
        return path


def load_token(path: str | Path, backbone: Any | None = None) -> PartToken:
    """Loads a token file (no code executed) and, given a backbone, refuses a token made for
    other weights or another width with one line saying so."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"token not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("partedit_bench", "{}"))
            embedding = fh.get_tensor("embedding")
    except Exception as exc:
        raise UserError(f"cannot read token {path}: {exc}") from exc
    token = PartToken(checked_embedding(embedding, path), meta)
    if backbone is not None:
        check_token(token, backbone, path)
    return token


def checked_embedding(embedding: Any, where: Path | str) -> torch.Tensor:
    """`embedding` if it is a finite floating-point (2, d) tensor; one line saying what it is
    otherwise (an integer, NaN or Inf token would localize nothing and fail no check later)."""
    if not isinstance(embedding, torch.Tensor):
        raise UserError(f"token {where} holds {type(embedding).__name__}, not a tensor")
    if not embedding.is_floating_point():
        raise UserError(f"token {where} is {embedding.dtype}, not floating point")
    if embedding.ndim != 2 or embedding.shape[0] != 2 or embedding.shape[1] == 0:
        raise UserError(
            f"token {where} has shape {tuple(embedding.shape)}; a part token is (2, d): "
            "[background, part]"
        )
    if not bool(torch.isfinite(embedding).all()):
        raise UserError(f"token {where} holds NaN or Inf values")
    return embedding


def check_token(token: PartToken, backbone: Any, where: Path | str) -> None:
    width = backbone.text_width
    if token.embedding.shape != (2, width):
        raise UserError(
            f"token {where} has shape {tuple(token.embedding.shape)}, backbone "
            f"{backbone.name} needs (2, {width})"
        )
    made_for = token.meta.get("fingerprint")
    if made_for != backbone.fingerprint:
        raise UserError(
            f"token {where} was made for backbone {token.meta.get('backbone')!r} "
            f"(weights {made_for}), not {backbone.name} (weights "
            f"{backbone.fingerprint}); train one with `partedit-bench train-token "
            f"--backbone {backbone.name} --part {token.part or 'PART'}`"
        )


def token_layers(backbone: Any, layers: int | tuple[str, ...] | list[str]) -> list[str]:
    """A token's layers: the first N decoder cross-attention layers, or the names given."""
    if isinstance(layers, int):
        return decoder_cross_attention_layers(backbone.unet, layers)
    return list(layers)


def check_layer_count(backbone: Any, count: int, exact: bool) -> None:
    """A token on the first `count` decoder cross-attention layers: when `count` was asked for
    (`exact`), a backbone with fewer is refused in one line; otherwise all it has are used."""
    available = len(decoder_cross_attention_layers(backbone.unet, 10**6))
    if exact and count > available:
        raise UserError(
            f"--layers {count}: {backbone.name} has {available} decoder cross-attention layers"
        )


def import_target(
    backbone_name: str, part: str, output: Path | None = None, overwrite: bool = False
) -> Path:
    """Where `import_token` stores a token, checked before anything loads: never over an
    existing token (the shipped ones included) without `overwrite`, never a folder."""
    from partedit_bench.outputs import output_file

    target = output or token_path(backbone_name, part)
    return output_file(target, "import-token --output", overwrite)


def import_token(
    path: str | Path,
    backbone: Any,
    part: str,
    output: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Stores an officially released token ((2, 2048) in a `.pt`, read with
    torch.load(weights_only=True), or a safetensors file with key `embedding`) in this
    project's format for `backbone`."""
    if part not in CANONICAL_PARTS:
        from partedit_bench.errors import did_you_mean

        raise UserError(f"unknown part token '{part}'{did_you_mean(part, CANONICAL_PARTS)}")
    embedding = read_released_token(path)
    target = import_target(backbone.name, part, output, overwrite)
    meta = {
        "backbone": backbone.name,
        "fingerprint": backbone.fingerprint,
        "width": backbone.text_width,
        "part": part,
        "source": f"imported from {Path(path).name}",
        "layers": decoder_cross_attention_layers(backbone.unet, 8),
    }
    token = PartToken(embedding, meta)
    check_token(token, backbone, path)
    return token.save(target)


def read_released_token(path: str | Path) -> torch.Tensor:
    """The (2, d) embedding of a released token file, read without executing code (one line
    when the file is missing, corrupt or holds something else)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"token file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path))
        except Exception as exc:
            raise UserError(f"cannot read {path} as safetensors ({exc})") from exc
    else:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(
                f"cannot read {path} as weights only ({type(exc).__name__}); "
                "refusing to execute code from a checkpoint"
            ) from exc
    if isinstance(data, dict):
        tensors = [v for k, v in data.items() if k == "embedding"] or [
            v for v in data.values() if isinstance(v, torch.Tensor)
        ]
        if len(tensors) != 1:
            raise UserError(f"{path}: expected one tensor under 'embedding', found {list(data)}")
        data = tensors[0]
    if not isinstance(data, torch.Tensor) or data.ndim == 0:
        raise UserError(f"{path} holds {type(data).__name__}, not a tensor")
    if data.ndim > 2 and all(n == 1 for n in data.shape[:-2]):
        data = data.reshape(data.shape[-2:])  # a released (1, 2, d) is the same token
    return checked_embedding(data.detach(), path).float()
