"""Where the judge's answers come from: an image-text-to-text model in-process through
transformers, or an OpenAI-compatible chat endpoint. Both answer `ask(images, prompt)` with
the model's text, greedy, at most `MAX_NEW_TOKENS` new tokens; `identity` names the model for
the answer cache and the group's manifest."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from partedit_bench.errors import UserError
from partedit_bench.judge import DEFAULT_MODEL, MAX_NEW_TOKENS


def _messages(images: list[Image.Image], prompt: str, as_urls: bool) -> list[dict[str, Any]]:
    """One user turn: the images, then the question (VIEScore's order)."""
    content: list[dict[str, Any]] = []
    for image in images:
        if as_urls:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            content.append({"type": "image_url", "image_url": {"url": url}})
        else:
            content.append({"type": "image", "image": image})
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


class TransformersJudge:
    """A model id of the hub (from the local cache first) or a folder, loaded with
    `AutoModelForImageTextToText` and its `AutoProcessor` (the model's chat template)."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from partedit_bench.metrics.networks import _cache_first

        self.name, self.device = model, device
        try:
            self.processor = _cache_first(lambda: AutoProcessor.from_pretrained(model))
            chosen = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16,
                      "float16": torch.float16}[dtype]  # fmt: skip
            if chosen is None:
                chosen = torch.bfloat16 if device.startswith("cuda") else torch.float32
            self.model = _cache_first(
                lambda: AutoModelForImageTextToText.from_pretrained(model, dtype=chosen)
            )
        except Exception as exc:
            where = "folder" if Path(model).is_dir() else "model"
            raise UserError(
                f"judge {where} {model!r} could not be loaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); on a machine with a "
                f"network: `huggingface-cli download {model}`, or serve it and pass --judge-url"
            ) from exc
        self.model = self.model.to(device).eval()
        digest = None
        if Path(model).is_dir():
            from partedit_bench.engine.backbones import weights_fingerprint

            digest = weights_fingerprint({"model": self.model})
        self.identity = {"backend": "transformers", "model": model, "weights": digest}

    def ask(self, images: list[Image.Image], prompt: str) -> str:
        import torch

        messages = _messages(images, prompt, as_urls=False)
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=images, text=text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        return str(self.processor.decode(new, skip_special_tokens=True))


class HttpJudge:
    """Any OpenAI-compatible `/chat/completions` endpoint (vLLM, SGLang, `transformers serve`,
    hosted APIs): `url` is the API root (`http://host:8000/v1`), the key (if any) is read from
    the environment variable `key_env`, never stored."""

    def __init__(self, url: str, model: str, key_env: str = "OPENAI_API_KEY", timeout: float = 600):
        self.url, self.model, self.key_env, self.timeout = url.rstrip("/"), model, key_env, timeout
        self.identity = {"backend": "openai-compatible", "url": self.url, "model": model}

    def ask(self, images: list[Image.Image], prompt: str) -> str:
        import urllib.error
        import urllib.request

        body = {
            "model": self.model,
            "messages": _messages(images, prompt, as_urls=True),
            "max_tokens": MAX_NEW_TOKENS,
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            raise UserError(f"judge endpoint {self.url}: HTTP {exc.code} ({detail})") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(f"judge endpoint {self.url} did not answer ({exc})") from exc
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as exc:
            raise UserError(
                f"judge endpoint {self.url}: not a chat completion ({reply!r:.200})"
            ) from exc


def load_judge(
    model: str | None = None,
    url: str | None = None,
    api_model: str | None = None,
    key_env: str = "OPENAI_API_KEY",
    device: str = "cpu",
) -> Any:
    """The HTTP backend when `url` is given (its `api_model`, default `model`), else the
    in-process one (`model`, default Qwen2.5-VL-7B-Instruct)."""
    if url:
        name = api_model or model
        if not name:
            raise UserError("--judge-url needs the served model's name (--judge-api-model)")
        return HttpJudge(url, name, key_env)
    return TransformersJudge(model or DEFAULT_MODEL, device)
