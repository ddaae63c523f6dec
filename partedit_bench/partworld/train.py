"""The staged PartWorld trainer: each stage resumes from its last checkpoint, bit-identically."""

from __future__ import annotations

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
from partedit_bench.partworld.checkpoints import (
    _load_checkpoint,
    _log,
    _progress,
    _rng_state,
    _save_checkpoint,
    _set_rng_state,
    load_ema,
    load_module,
    save_module,
    trained_state,
)
from partedit_bench.partworld.model import (
    MODEL_VERSION,
    STAGES,
    WORK,
    PartWorldTrainConfig,
    build_components,
    render_dataset,
)


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
            eps = torch.randn(posterior.mean.shape, generator=gen, device="cpu")
            z = posterior.mean + posterior.std * eps
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
                    posterior.mean.shape, generator=gen, device="cpu"
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
            load_module(vae, final)
            return
        images = torch.from_numpy(self.data()["images"]).permute(0, 3, 1, 2)
        ckpt_path = self.work / f"{stage}.ckpt"
        gen = torch.Generator("cpu").manual_seed(seed)
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
        save_module(vae, final)
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
        gen = torch.Generator("cpu").manual_seed(cfg.seed + 2)
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
            t = torch.randint(0, len(alphas), (cfg.batch,), generator=gen, device="cpu")
            noise = torch.randn(x0.shape, generator=gen, device="cpu")
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
        return trained_state(self.components)

    def load_ema(self, path: Path | None = None) -> None:
        """Copies EMA weights (the final file, or the running checkpoint's) into the modules."""
        load_ema(self.components, path or self.work / "unet_ema.safetensors")
        scale = 1.0 / float(self.latents().std())
        self.components["vae"].register_to_config(scaling_factor=scale)

    def _check_exportable(self) -> None:
        check_exportable(self.work, self.out)

    def export(self) -> Path:
        return export_model(self)

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


def check_exportable(work: Path, out: Path) -> None:
    if not (work / "unet_ema.safetensors").is_file():
        raise UserError(
            f"nothing to export in {out}: the unet stage has not finished "
            "(run the stages data,vae,decoder,unet first)"
        )


def export_model(trainer: Trainer) -> Path:
    """The export stage: the EMA weights as a diffusers folder with its training config."""
    from partedit_bench.engine.backbones import Backbone

    check_exportable(trainer.work, trainer.out)
    trainer.load_ema()
    for module in trainer.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    backbone = Backbone(
        "partworld-sd",
        "sd",
        trainer.components,
        trainer.config.resolution,
        str(trainer.out),
        random_weights=False,
    )
    backbone.save(trainer.out)
    atomic_write_bytes(
        trainer.out / "training_config.json",
        json_bytes({"version": MODEL_VERSION, **trainer.config.to_json()}),
    )
    return trainer.out
