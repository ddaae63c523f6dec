"""Does a backbone follow PartWorld prompts? An attribute classifier answers.

A small CNN is trained on PartWorld renders (their labels are exact: the object class, the
setting and every attribute a caption names) and checked on held-out renders. It then
classifies images the backbone generates from the captions of held-out scenes: an attribute
is followed when the classifier reads back the value the caption named. Chance is the
majority value's frequency among the test captions (the strongest guess that ignores the
image), and a one-sided binomial test says how far above it each attribute lies.

The animal species is not an attribute: PartWorld draws dogs, cats, cows and horses alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from partedit_bench.data import partworld as pw

#: attribute -> (class it belongs to or "" for all classes, its values)
ATTRIBUTES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "class": ("", tuple(pw.CLASSES)),
    "setting": ("", tuple(pw.SETTINGS)),
    "hair": ("humanoid", pw.HAIR_COLORS),
    "hair_style": ("humanoid", ("short", "long")),
    "shirt": (
        "humanoid",
        ("red", "green", "blue", "yellow", "purple", "orange", "pink", "white", "black"),
    ),
    "shirt_pattern": ("humanoid", ("plain", "striped")),
    "fur": ("quadruped", pw.FUR),
    "head": ("quadruped", pw.FUR),
    "body": ("car", pw.CAR_COLORS),
    "hood": ("car", pw.CAR_COLORS),
    "frame": ("chair", pw.FRAME),
    "seat": ("chair", ("red", "blue", "green", "brown", "black", "white", "gray")),
}
#: Which attributes are part attributes (the rest describe the whole object or scene).
PART_ATTRIBUTES = {"hair", "hair_style", "shirt", "shirt_pattern", "head", "hood", "seat"}
CLASSIFIER_SEED = 31_337
TEST_SEED = 47_474


def scene_labels(scene: pw.Scene) -> dict[str, Any]:
    labels = {"class": scene.class_name, "setting": scene.setting}
    for name, (cls, _) in ATTRIBUTES.items():
        if cls == scene.class_name:
            labels[name] = scene.attrs[name]
    return labels


def render_labelled(n: int, seed: int, resolution: int = 64, correlation: float = 0.5):
    """n scenes (classes in turn): images (n, 3, R, R) in [-1, 1], labels, captions."""
    classes = list(pw.CLASSES)
    images = np.empty((n, resolution, resolution, 3), np.uint8)
    labels, captions = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scene = pw.sample_scene(rng, classes[i % len(classes)], correlation)
        images[i], _ = pw.render(scene, resolution)
        labels.append(scene_labels(scene))
        captions.append(pw.caption(scene))
    return _to_tensor(images), labels, captions


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class AttributeClassifier(nn.Module):
    """A 4-stage CNN with one linear head per attribute."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 32, 64, 96, 128]
        for cin, cout in zip(channels[:-1], channels[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                nn.GroupNorm(8, cout),
                nn.SiLU(),
            ]
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 16, 256), nn.SiLU())
        self.heads = nn.ModuleDict(
            {name: nn.Linear(256, len(values)) for name, (_, values) in ATTRIBUTES.items()}
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.shape[-1] != 64:
            images = nn.functional.interpolate(images, size=(64, 64), mode="area")
        features = self.trunk(images)
        return {name: head(features) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 256) -> list[dict[str, Any]]:
        self.eval()
        rows: list[dict[str, Any]] = [{} for _ in range(len(images))]
        for start in range(0, len(images), batch):
            logits = self(images[start : start + batch])
            for name, (_, values) in ATTRIBUTES.items():
                for i, k in enumerate(logits[name].argmax(1).tolist()):
                    rows[start + i][name] = values[k]
        return rows


def _targets(labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """attribute -> (n,) value index, -100 where the attribute does not apply."""
    out = {}
    for name, (_, values) in ATTRIBUTES.items():
        out[name] = torch.tensor(
            [values.index(lab[name]) if name in lab else -100 for lab in labels], device="cpu"
        )
    return out


def train_classifier(
    images: int = 12000, steps: int = 1500, batch: int = 64, seed: int = CLASSIFIER_SEED
) -> tuple[AttributeClassifier, dict[str, float]]:
    """Trains on fresh renders; returns the model and its accuracy on 1000 held-out renders."""
    torch.manual_seed(seed)
    x, labels, _ = render_labelled(images + 1000, seed)
    targets = _targets(labels)
    model = AttributeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator("cpu").manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, images, (batch,), generator=gen, device="cpu")
        batch_x = x[idx]
        # small brightness jitter and 1-2 px shifts: generated images are never pixel-exact
        batch_x = batch_x * (
            1 + 0.1 * (torch.rand(batch, 1, 1, 1, generator=gen, device="cpu") - 0.5)
        )
        shift = [int(v) for v in torch.randint(-2, 3, (2,), generator=gen, device="cpu")]
        batch_x = torch.roll(batch_x, shifts=shift, dims=(2, 3))
        logits = model(batch_x)
        loss = sum(
            nn.functional.cross_entropy(logits[n], targets[n][idx], ignore_index=-100)
            for n in ATTRIBUTES
            if (targets[n][idx] >= 0).any()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        sched.step()
    predicted = model.predict(x[images:])
    return model, accuracy(predicted, labels[images:])


def accuracy(predicted: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for name in ATTRIBUTES:
        pairs = [
            (p[name], lab[name]) for p, lab in zip(predicted, labels, strict=True) if name in lab
        ]
        if pairs:
            out[name] = sum(a == b for a, b in pairs) / len(pairs)
    return out


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


@torch.no_grad()
def generate(
    backbone: Any, captions: list[str], steps: int, guidance: float, seed: int, batch: int = 32
) -> torch.Tensor:
    """Images (n, 3, R, R) in [-1, 1] generated from the captions with the backbone's own
    text-to-image pipeline (its scheduler, classifier-free guidance)."""
    pipe = backbone.pipeline()
    out = []
    for start in range(0, len(captions), batch):
        chunk = captions[start : start + batch]
        gen = torch.Generator(backbone.device).manual_seed(seed + start)
        result = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gen,
            output_type="np",
            height=backbone.resolution,
            width=backbone.resolution,
        ).images
        out.append(torch.from_numpy(np.asarray(result)).permute(0, 3, 1, 2).float() * 2 - 1)
    return torch.cat(out)


#: class -> (the attribute a partial caption names, the one it leaves out, how the training
#: captions tie the second to the first with probability `correlation`)
ENTANGLED = {
    "humanoid": ("hair", "shirt", lambda hair: pw.HAIR_TO_SHIRT[hair]),
    "quadruped": ("fur", "head", lambda fur: fur),
    "car": ("body", "hood", lambda body: body),
    "chair": ("frame", "seat", lambda frame: frame),
}


def entanglement(
    backbone: Any,
    classifier: AttributeClassifier,
    n_per_class: int = 40,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
    correlation: float = 0.5,
) -> list[dict[str, Any]]:
    """Captions that name one attribute and leave its correlated partner out ("a photo of a
    person with blonde hair in a park"): how often does the generated partner take the value
    the training captions tie it to? Compared with how often the training scenes (drawn with
    `correlation`) and scenes drawn without correlation have the tied value."""
    from partedit_bench.partworld.model import partial_caption

    rows = []
    for class_name, (named, left_out, tied) in ENTANGLED.items():
        captions, expected, independent, trained = [], [], [], []
        for i in range(n_per_class):
            rng = np.random.default_rng([TEST_SEED, 7, i])
            while True:
                scene = pw.sample_scene(rng, class_name, 0.0)
                text = partial_caption(scene, rng)
                if class_name != "humanoid" or "hair" in text:
                    break
            captions.append(text)
            expected.append(tied(scene.attrs[named]))
            independent.append(scene.attrs[left_out] == tied(scene.attrs[named]))
            train_scene = pw.sample_scene(rng, class_name, correlation)
            trained.append(train_scene.attrs[left_out] == tied(train_scene.attrs[named]))
        images = generate(backbone, captions, steps, guidance, seed)
        predicted = classifier.predict(images)
        hits = sum(p[left_out] == e for p, e in zip(predicted, expected, strict=True))
        rows.append(
            {
                "class": class_name,
                "caption names": named,
                "left out": left_out,
                "n": n_per_class,
                "tied value (generated)": hits / n_per_class,
                "tied value (training scenes)": float(np.mean(trained)),
                "tied value (untied scenes)": float(np.mean(independent)),
                "example": captions[0],
            }
        )
    return rows


@dataclass
class FollowingResult:
    rows: list[dict[str, Any]]
    classifier_accuracy: dict[str, float]
    settings: dict[str, Any]
    entangled: list[dict[str, Any]] | None = None
    vae_psnr: float | None = None

    def markdown(self) -> str:
        lines = [
            "| attribute | kind | n | follows (generated) | chance (majority) | p | "
            "classifier on renders |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            p = "<1e-6" if r["p"] < 1e-6 else f"{r['p']:.2g}"
            lines.append(
                f"| {r['attribute']} | {r['kind']} | {r['n']} | {r['accuracy']:.2f} | "
                f"{r['chance']:.2f} | {p} | {r['classifier']:.2f} |"
            )
        if self.vae_psnr is not None:
            lines += ["", f"VAE reconstruction of the test renders: {self.vae_psnr:.1f} dB PSNR."]
        if self.entangled:
            lines += [
                "",
                "| class | caption names | left out | n | tied value, generated | "
                "tied value, training scenes | tied value, untied scenes | example caption |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in self.entangled:
                lines.append(
                    f"| {r['class']} | {r['caption names']} | {r['left out']} | {r['n']} | "
                    f"{r['tied value (generated)']:.2f} | {r['tied value (training scenes)']:.2f}"
                    f" | {r['tied value (untied scenes)']:.2f} | {r['example']} |"
                )
        return "\n".join(lines) + "\n"


def prompt_following(
    backbone: Any,
    n: int = 240,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
    classifier: AttributeClassifier | None = None,
    classifier_accuracy: dict[str, float] | None = None,
    images_out: Path | None = None,
) -> FollowingResult:
    """Generates one image per held-out caption and scores each named attribute."""
    start = time.time()
    if classifier is None:
        classifier, classifier_accuracy = train_classifier()
    renders, labels, captions = render_labelled(n, TEST_SEED)
    images = generate(backbone, captions, steps, guidance, seed)
    vae_psnr = reconstruction_psnr(backbone, renders)
    predicted = classifier.predict(images)
    if images_out is not None:
        save_grid(images[:48], images_out, columns=8)
    rows = []
    for name, (_, values) in ATTRIBUTES.items():
        pairs = [
            (p[name], lab[name]) for p, lab in zip(predicted, labels, strict=True) if name in lab
        ]
        if not pairs:  # no caption of this (small) evaluation names the attribute
            continue
        truth = [b for _, b in pairs]
        hits = sum(a == b for a, b in pairs)
        chance = max(truth.count(v) for v in values) / len(truth)
        rows.append(
            {
                "attribute": name,
                "kind": "part" if name in PART_ATTRIBUTES else "object/scene",
                "n": len(pairs),
                "accuracy": hits / len(pairs),
                "chance": chance,
                "p": binomial_sf(hits, len(pairs), chance),
                "classifier": (classifier_accuracy or {}).get(name, float("nan")),
            }
        )
    settings = {
        "backbone": backbone.name,
        "fingerprint": backbone.fingerprint,
        "captions": n,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "test_seed": TEST_SEED,
        "seconds": round(time.time() - start, 1),
    }
    entangled = entanglement(backbone, classifier, steps=steps, guidance=guidance, seed=seed)
    settings["seconds"] = round(time.time() - start, 1)
    return FollowingResult(rows, classifier_accuracy or {}, settings, entangled, vae_psnr)


@torch.no_grad()
def reconstruction_psnr(backbone: Any, images: torch.Tensor) -> float:
    """Mean PSNR (dB, [0, 1] range) of VAE decode(encode(image)) over the images."""
    from PIL import Image

    pil = [
        Image.fromarray(((im.permute(1, 2, 0) + 1) * 127.5).round().byte().cpu().numpy())
        for im in images
    ]
    values = []
    for start in range(0, len(pil), 64):
        chunk = pil[start : start + 64]
        decoded = backbone.decode_latents(backbone.encode_images(chunk))
        for a, b in zip(chunk, decoded, strict=True):
            diff = np.asarray(a, np.float64) / 255 - np.asarray(b, np.float64) / 255
            err = max(float(np.mean(diff**2)), 1e-10)
            values.append(float(10 * np.log10(1 / err)))
    return float(np.mean(values))


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    from PIL import Image

    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, _ = arr.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for i, im in enumerate(arr):
        r, c = divmod(i, columns)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def write_result(result: FollowingResult, folder: Path) -> None:
    from partedit_bench.io import atomic_write_bytes, json_bytes

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        folder / "prompt_following.json",
        json_bytes(
            {
                "settings": result.settings,
                "rows": result.rows,
                "vae_psnr": result.vae_psnr,
                "entangled": result.entangled,
            }
        ),
    )
    atomic_write_bytes(folder / "prompt_following.md", result.markdown().encode())
