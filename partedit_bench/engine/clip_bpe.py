"""The real CLIP BPE tokenizer, written offline from the vocabulary open_clip_torch ships."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


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

    from partedit_bench.paths import cache_root

    folder = clip_tokenizer_files(cache_root() / "clip-bpe")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        pad_token=pad_token,
        model_max_length=77,
    )


# ---------------------------------------------------------------------------------------
# Tiny offline backbones.
