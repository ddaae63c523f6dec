"""The PartWorld backbone: a small SD-family text-to-image model trained from scratch on
PartWorld renders and captions, so that the offline default run edits with a model that
follows its prompts instead of random weights.

The model is made of real diffusers / transformers classes (AutoencoderKL with 4x
downsampling, a UNet2DConditionModel with cross-attention at latent 16, 8 and 4, a CLIP text
encoder with the real CLIP BPE tokenizer, SD's DDIM schedule) and is saved as a diffusers
folder, so every method adapter loads it with `from_pretrained` unchanged.

Training runs in stages, each resumable from its last checkpoint:

1. `data`: N scenes rendered at 64 px with a fixed data seed (disjoint from every suite's
   seed), each with its full caption and a partial one that names the object and only one
   part (so a caption alone carries the configurable part-color correlation).
2. `vae`: the autoencoder alone (L1 + a small KL term), then `decoder`: the decoder alone
   with the encoder frozen (L1 + MSE), which sharpens small part colors.
3. `unet`: the UNet and the text encoder together on the frozen VAE's latents (epsilon
   prediction, min-SNR-5 weighting, 10% empty captions for classifier-free guidance, EMA).
4. `export`: the EMA weights as a diffusers folder with its config, data recipe and log.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partedit_bench.errors import UserError
from partedit_bench.io import atomic_write_bytes, json_bytes

MODEL_VERSION = 1
WORK = "_training"
STAGES = ("data", "vae", "decoder", "unet", "export")


@dataclass
class PartWorldTrainConfig:
    """Everything that determines the trained weights (saved beside them)."""

    seed: int = 0
    images: int = 24000
    resolution: int = 64
    data_seed: int = 20_251_127  # no suite uses this seed
    correlation: float = 0.5
    partial_captions: float = 0.3
    empty_captions: float = 0.1
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    decoder_steps: int = 1500  # then the decoder alone (the encoder, so the latents, frozen)
    decoder_lr: float = 5e-4
    unet_channels: tuple[int, ...] = (32, 64, 112)
    unet_heads: tuple[int, ...] = (2, 4, 8)
    text_width: int = 64
    text_layers: int = 2
    unet_steps: int = 5000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    threads: int = 0  # 0: torch's default

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartWorldTrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise UserError(f"unknown PartWorld training setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    def with_overrides(self, pairs: list[str]) -> PartWorldTrainConfig:
        data = self.to_json()
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in data:
                raise UserError(f"--set expects KEY=VALUE with a known key, got {pair!r}")
            current = data[key]
            if isinstance(current, (tuple, list)):
                data[key] = tuple(int(v) for v in value.split(","))
            else:
                data[key] = type(current)(value)
        return PartWorldTrainConfig.from_json(data)


# ---------------------------------------------------------------------------------------
# Data


def partial_caption(scene: Any, rng: np.random.Generator) -> str:
    """The caption with one part phrase left out (object plus one part at most)."""
    from partedit_bench.data import partworld as pw

    a, where = scene.attrs, scene.setting
    if scene.class_name == "humanoid":
        pattern = "striped " if a["shirt_pattern"] == "striped" else ""
        phrase = (
            f"a person with {pw._hair_words(a)}"
            if rng.random() < 0.5
            else f"a person wearing {pw._article(a['shirt'] + ' ' + pattern + 'shirt')}"
        )
    elif scene.class_name == "quadruped":
        phrase = pw._article(f"{a['fur']} {a['animal']}")
    elif scene.class_name == "car":
        phrase = pw._article(f"{a['body']} car")
    else:
        phrase = pw._article(f"{a['frame']} chair")
    return f"a photo of {phrase} {where}"


def render_dataset(config: PartWorldTrainConfig) -> dict[str, Any]:
    """Renders the training set: images (N, R, R, 3) uint8, full and partial captions."""
    from partedit_bench.data import partworld as pw

    classes = list(pw.CLASSES)
    images = np.empty((config.images, config.resolution, config.resolution, 3), np.uint8)
    full, partial, labels = [], [], []
    for i in range(config.images):
        rng = np.random.default_rng([config.data_seed, i])
        scene = pw.sample_scene(rng, classes[i % len(classes)], config.correlation)
        images[i], _ = pw.render(scene, config.resolution)
        full.append(pw.caption(scene))
        partial.append(partial_caption(scene, rng))
        labels.append({"class": scene.class_name, "setting": scene.setting, **_attrs(scene)})
    return {"images": images, "full": full, "partial": partial, "labels": labels}


def _attrs(scene: Any) -> dict[str, Any]:
    return {k: v for k, v in scene.attrs.items() if isinstance(v, (str, bool))}


# ---------------------------------------------------------------------------------------
# Models


def build_components(config: PartWorldTrainConfig) -> dict[str, Any]:
    """Fresh, seeded modules of the PartWorld backbone."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from partedit_bench.engine.clip_bpe import clip_tokenizer

    torch.manual_seed(config.seed)
    levels = len(config.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=config.vae_channels,
        norm_num_groups=16,
        sample_size=config.resolution,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
    )
    latent = config.resolution // 2 ** (levels - 1)
    unet = UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=config.unet_channels,
        norm_num_groups=16,
        cross_attention_dim=config.text_width,
        attention_head_dim=config.unet_heads,
        use_linear_projection=True,
        down_block_types=("CrossAttnDownBlock2D",) * len(config.unet_channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(config.unet_channels),
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=config.text_width,
            intermediate_size=4 * config.text_width,
            num_hidden_layers=config.text_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=config.text_width,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "scheduler": scheduler,
    }


# ---------------------------------------------------------------------------------------
# Checkpoints (torch.save of tensors and plain containers; loaded with weights_only=True)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _rng_state(gen: torch.Generator, np_rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": gen.get_state(), "numpy": json.dumps(np_rng.bit_generator.state)}


def _set_rng_state(state: dict[str, Any], gen: torch.Generator, np_rng: np.random.Generator):
    gen.set_state(state["torch"])
    np_rng.bit_generator.state = json.loads(state["numpy"])


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True)


def _log(folder: Path, row: dict[str, Any]) -> None:
    with open(folder / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------
# Stages


class TrainingStopped(Exception):
    """A stage stopped at `Trainer.stop_at` with its checkpoint saved."""


@dataclass
class Trainer:
    """Trains the PartWorld backbone into `out` (stages resume from `out/_training`)."""

    out: Path
    config: PartWorldTrainConfig
    progress: bool = True
    #: stop a training stage once it reaches this step (after a checkpoint); rerun to go on
    stop_at: int | None = None
    components: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work = self.out / WORK
        self.work.mkdir(parents=True, exist_ok=True)
        saved = self.work / "config.json"
        if saved.is_file():
            previous = PartWorldTrainConfig.from_json(json.loads(saved.read_text()))
            if previous != self.config:
                changed = [
                    k for k, v in previous.to_json().items() if self.config.to_json()[k] != v
                ]
                raise UserError(
                    f"{self.out} holds a training run with different settings "
                    f"({', '.join(changed)}); use another --out or remove {self.work}"
                )
        else:
            atomic_write_bytes(saved, json_bytes(self.config.to_json()))
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.components = build_components(self.config)

    # data ------------------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        path = self.work / "data.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                return {"images": f["images"], **meta}
        start = time.time()
        data = render_dataset(self.config)
        meta = {k: data[k] for k in ("full", "partial", "labels")}
        import io

        buffer = io.BytesIO()
        np.savez(buffer, images=data["images"], meta=np.array(json.dumps(meta)))
        atomic_write_bytes(path, buffer.getvalue())
        _log(self.work, {"stage": "data", "seconds": round(time.time() - start, 1)})
        return data

    # vae -------------------------------------------------------------------------------

    def train_vae(self) -> None:
        """The autoencoder alone: L1 + a small KL term, 100 warm-up steps, cosine decay."""
        cfg, vae = self.config, self.components["vae"]

        def lr_at(step: int) -> float:
            warm = min(1.0, (step + 1) / 100)
            return cfg.vae_lr * warm * (0.5 + 0.5 * math.cos(math.pi * step / cfg.vae_steps))

        def loss_at(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            rec = (vae.decode(z).sample - x).abs().mean()
            kl = posterior.kl().mean() / x[0].numel()
            return rec + cfg.kl_weight * kl * x[0].numel(), {"l1": rec.item(), "kl": kl.item()}

        vae.train()
        self._autoencoder_stage(
            "vae", cfg.vae_steps, cfg.seed + 1, list(vae.parameters()), lr_at, loss_at
        )

    def train_decoder(self) -> None:
        """Fine-tunes the decoder alone (L1 + MSE) with the encoder frozen, as SD's ft-MSE
        VAE: the latents the UNet learns from do not change, reconstructions sharpen."""
        cfg, vae = self.config, self.components["vae"]
        self.train_vae()

        def lr_at(step: int) -> float:
            return cfg.decoder_lr * (0.5 + 0.5 * math.cos(math.pi * step / cfg.decoder_steps))

        def loss_at(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
            with torch.no_grad():
                posterior = vae.encode(x).latent_dist
                z = posterior.mean + posterior.std * torch.randn(
                    posterior.mean.shape, generator=gen
                )
            recon = vae.decode(z).sample
            l1 = (recon - x).abs().mean()
            return l1 + (recon - x).pow(2).mean(), {"l1": l1.item()}

        vae.eval()
        vae.decoder.train()
        trained = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
        self._autoencoder_stage("decoder", cfg.decoder_steps, cfg.seed + 3, trained, lr_at, loss_at)

    def _autoencoder_stage(
        self,
        stage: str,
        steps: int,
        seed: int,
        params: list[torch.nn.Parameter],
        lr_at: Any,
        loss_at: Any,
    ) -> None:
        """One resumable autoencoder stage: batches of training images, AdamW on `params`,
        a checkpoint every `checkpoint_every` steps, the VAE saved to `<stage>` weights at the
        end (loaded instead when the stage is already done)."""
        cfg, vae = self.config, self.components["vae"]
        final = self.work / ("vae.safetensors" if stage == "vae" else f"vae_{stage}.safetensors")
        if final.is_file():
            self._load_module(vae, final)
            return
        images = torch.from_numpy(self.data()["images"]).permute(0, 3, 1, 2)
        ckpt_path = self.work / f"{stage}.ckpt"
        gen = torch.Generator().manual_seed(seed)
        np_rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(params, lr=lr_at(0), weight_decay=0.0)
        step = 0
        state = _load_checkpoint(ckpt_path)
        if state is not None:
            vae.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            _set_rng_state(state["rng"], gen, np_rng)
            step = int(state["step"])
        bar = _progress(steps, step, stage, self.progress)
        start = time.time()
        while step < steps:
            if self._should_stop(step):
                raise TrainingStopped(f"{stage} stopped at step {step}")
            idx = torch.from_numpy(np_rng.integers(0, len(images), cfg.vae_batch))
            x = images[idx].float() / 127.5 - 1.0
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            loss, logs = loss_at(x, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(l1=f"{logs['l1']:.4f}")
            if step % 50 == 0:
                _log(self.work, {"stage": stage, "step": step, **logs})
            if step % cfg.checkpoint_every == 0 or step == steps or self._should_stop(step):
                _save_checkpoint(
                    ckpt_path,
                    {
                        "model": vae.state_dict(),
                        "opt": opt.state_dict(),
                        "rng": _rng_state(gen, np_rng),
                        "step": step,
                    },
                )
        bar.close()
        vae.eval()
        self._save_module(vae, final)
        _log(self.work, {"stage": stage, "done": True, "seconds": round(time.time() - start, 1)})

    # latents ---------------------------------------------------------------------------

    @torch.no_grad()
    def latents(self) -> torch.Tensor:
        path = self.work / "latents.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            return load_file(path)["latents"]
        vae = self.components["vae"].eval()
        images = torch.from_numpy(self.data()["images"]).permute(0, 3, 1, 2)
        out = []
        for chunk in images.split(256):
            out.append(vae.encode(chunk.float() / 127.5 - 1.0).latent_dist.mean)
        latents = torch.cat(out).contiguous()  # the file loads back contiguous: train on that
        from safetensors.torch import save_file

        tmp = path.with_suffix(".tmp")
        save_file({"latents": latents.contiguous()}, tmp)
        os.replace(tmp, path)
        return latents

    # unet + text encoder ----------------------------------------------------------------

    def train_unet(self) -> None:
        cfg = self.config
        unet, text_encoder = self.components["unet"], self.components["text_encoder"]
        final = self.work / "unet_ema.safetensors"
        if final.is_file():
            return
        latents = self.latents()
        scale = 1.0 / float(latents.std())
        self.components["vae"].register_to_config(scaling_factor=scale)
        latents = latents * scale
        data = self.data()
        tokenizer = self.components["tokenizer"]

        def ids(texts: list[str]) -> torch.Tensor:
            return tokenizer(
                texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
            ).input_ids

        full_ids, partial_ids, empty_ids = ids(data["full"]), ids(data["partial"]), ids([""])
        scheduler = self.components["scheduler"]
        alphas = scheduler.alphas_cumprod.float()
        snr = alphas / (1 - alphas)
        weights = torch.clamp(snr, max=cfg.min_snr_gamma) / snr

        params = list(unet.parameters()) + list(text_encoder.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        ema = {k: v.detach().clone() for k, v in self._trained_state().items()}
        gen = torch.Generator().manual_seed(cfg.seed + 2)
        np_rng = np.random.default_rng(cfg.seed + 2)
        ckpt_path = self.work / "unet.ckpt"
        step = 0
        state = _load_checkpoint(ckpt_path)
        if state is not None:
            unet.load_state_dict(state["unet"])
            text_encoder.load_state_dict(state["text_encoder"])
            opt.load_state_dict(state["opt"])
            ema = state["ema"]
            _set_rng_state(state["rng"], gen, np_rng)
            step = int(state["step"])
        unet.train()
        text_encoder.train()
        bar = _progress(cfg.unet_steps, step, "unet", self.progress)
        start, running = time.time(), None
        while step < cfg.unet_steps:
            if self._should_stop(step):
                raise TrainingStopped(f"unet stopped at step {step}")
            idx = np_rng.integers(0, len(latents), cfg.batch)
            roll = np_rng.random(cfg.batch)
            tokens = torch.where(
                torch.from_numpy(roll < cfg.partial_captions)[:, None],
                partial_ids[idx],
                full_ids[idx],
            )
            empty = torch.from_numpy(roll > 1 - cfg.empty_captions)
            tokens[empty] = empty_ids[0]
            x0 = latents[torch.from_numpy(idx)]
            t = torch.randint(0, len(alphas), (cfg.batch,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            a = alphas[t][:, None, None, None]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            context = text_encoder(tokens)[0]
            pred = unet(xt, t, context).sample
            per_sample = (pred - noise).pow(2).mean(dim=(1, 2, 3))
            loss = (per_sample * weights[t]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in self._trained_state().items():
                    ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if step % 50 == 0:
                _log(self.work, {"stage": "unet", "step": step, "loss": running, "lr": lr})
            if (
                step % cfg.checkpoint_every == 0
                or step == cfg.unet_steps
                or self._should_stop(step)
            ):
                _save_checkpoint(
                    ckpt_path,
                    {
                        "unet": unet.state_dict(),
                        "text_encoder": text_encoder.state_dict(),
                        "opt": opt.state_dict(),
                        "ema": ema,
                        "rng": _rng_state(gen, np_rng),
                        "step": step,
                    },
                )
        bar.close()
        from safetensors.torch import save_file

        tmp = final.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in ema.items()}, tmp)
        os.replace(tmp, final)
        _log(self.work, {"stage": "unet", "done": True, "seconds": round(time.time() - start, 1)})

    def _should_stop(self, step: int) -> bool:
        return self.stop_at is not None and step >= self.stop_at

    def _trained_state(self) -> dict[str, torch.Tensor]:
        """The trained parameters, `unet.*` and `text_encoder.*` (the EMA covers these)."""
        state = {}
        for prefix in ("unet", "text_encoder"):
            for name, p in self.components[prefix].named_parameters():
                state[f"{prefix}.{name}"] = p
        return state

    def load_ema(self, path: Path | None = None) -> None:
        """Copies EMA weights (the final file, or the running checkpoint's) into the modules."""
        path = path or self.work / "unet_ema.safetensors"
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            ema = load_file(path)
        else:
            state = _load_checkpoint(path)
            if state is None:
                raise UserError(f"no checkpoint at {path}")
            ema = state["ema"]
        with torch.no_grad():
            for k, p in self._trained_state().items():
                p.copy_(ema[k])
        scale = 1.0 / float(self.latents().std())
        self.components["vae"].register_to_config(scaling_factor=scale)

    # export ----------------------------------------------------------------------------

    def _check_exportable(self) -> None:
        if not (self.work / "unet_ema.safetensors").is_file():
            raise UserError(
                f"nothing to export in {self.out}: the unet stage has not finished "
                "(run the stages data,vae,decoder,unet first)"
            )

    def export(self) -> Path:
        from partedit_bench.engine.backbones import Backbone

        self._check_exportable()
        self.load_ema()
        for module in self.components.values():
            if isinstance(module, torch.nn.Module):
                module.eval().requires_grad_(False)
        backbone = Backbone(
            "partworld-sd",
            "sd",
            self.components,
            self.config.resolution,
            str(self.out),
            random_weights=False,
        )
        backbone.save(self.out)
        atomic_write_bytes(
            self.out / "training_config.json",
            json_bytes({"version": MODEL_VERSION, **self.config.to_json()}),
        )
        return self.out

    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        """Runs the stages in order; each one already done is loaded, not redone. The
        decoder stage leaves the encoder (so the UNet's latents) as the vae stage made it."""
        if "export" in stages and "unet" not in stages:
            self._check_exportable()
        if "data" in stages:
            self.data()
        if "vae" in stages:
            self.train_vae()
        if "decoder" in stages:
            self.train_decoder()
        if "unet" in stages:
            self.train_vae()
            self.train_unet()
        if "export" in stages:
            self.train_decoder()
            self.export()

    def _save_module(self, module: torch.nn.Module, path: Path) -> None:
        from safetensors.torch import save_file

        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp)
        os.replace(tmp, path)

    def _load_module(self, module: torch.nn.Module, path: Path) -> None:
        from safetensors.torch import load_file

        module.load_state_dict(load_file(path))
        module.eval()
