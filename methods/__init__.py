"""Editing method adapters, one self-contained folder each (`methods/<name>/`, with its
README.md), imported lazily by name: the harness reads `registry()` and imports a method only
when a run asks for it.

`INDEX` names the built-in adapters in the order tables list them. A folder that is not in it
is found by its name, as `methods.<name>:METHOD` (its `__init__.py` sets `METHOD` to the
adapter class), so adding a method touches its own folder and its test only.
"""

from __future__ import annotations

from pathlib import Path

INDEX: dict[str, str] = {
    "identity": "methods.identity:Identity",
    "partedit": "methods.partedit:PartEdit",
    "blended_latent": "methods.blended_latent:BlendedLatent",
    "ef_ddpm": "methods.ef_ddpm:EFDDPM",
    "ip2p": "methods.ip2p:InstructPix2Pix",
    "ledits_pp": "methods.ledits_pp:LeditsPP",
    "sdxl_inpaint": "methods.sdxl_inpaint:SDXLInpaint",
    "masactrl": "methods.masactrl:MasaCtrl",
    "p2p": "methods.p2p:PromptToPrompt",
    "flux_kontext": "methods.flux_kontext:FluxKontext",
    "stable_flow": "methods.stable_flow:StableFlow",
    "qwen_image_edit": "methods.qwen_image_edit:QwenImageEdit",
}


def registry() -> dict[str, str]:
    """Method name -> `module:Class`: the index, then every other method folder here."""
    found = dict(INDEX)
    known = {target.split(":")[0].split(".")[1] for target in found.values()}
    for root in [Path(p) for p in __path__]:
        for folder in sorted(root.iterdir()):
            if (folder / "__init__.py").is_file() and folder.name not in known:
                found[folder.name] = f"methods.{folder.name}:METHOD"
                known.add(folder.name)
    return found
