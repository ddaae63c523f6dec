"""The method registry: names -> `module:Class` strings, read from the method folders' names
and the installed distributions' entry points, so that no method is imported until a run asks
for it (`api.resolve_method_class`)."""

from __future__ import annotations

from pathlib import Path

#: The built-in methods in the order tables list them. A folder of `partedit_bench/methods/`
#: that is not in it is found by its name, as `partedit_bench.methods.<name>:METHOD` (its
#: `__init__.py` sets `METHOD` to the adapter class), so adding a method touches its own folder
#: and its test only. A method of another distribution declares an entry point in the group
#: `partedit_bench.methods` (`mymethod = "mypkg.edit:MyMethod"`); it joins under its name (a
#: built-in name is never replaced).
INDEX: dict[str, str] = {
    "identity": "partedit_bench.methods.identity:Identity",
    "partedit": "partedit_bench.methods.partedit:PartEdit",
    "blended_latent": "partedit_bench.methods.blended_latent:BlendedLatent",
    "ef_ddpm": "partedit_bench.methods.ef_ddpm:EFDDPM",
    "ip2p": "partedit_bench.methods.ip2p:InstructPix2Pix",
    "ledits_pp": "partedit_bench.methods.ledits_pp:LeditsPP",
    "sdxl_inpaint": "partedit_bench.methods.sdxl_inpaint:SDXLInpaint",
    "masactrl": "partedit_bench.methods.masactrl:MasaCtrl",
    "p2p": "partedit_bench.methods.p2p:PromptToPrompt",
    "flux_kontext": "partedit_bench.methods.flux_kontext:FluxKontext",
    "stable_flow": "partedit_bench.methods.stable_flow:StableFlow",
    "qwen_image_edit": "partedit_bench.methods.qwen_image_edit:QwenImageEdit",
}
ENTRY_POINTS = "partedit_bench.methods"


def registry(roots: list[Path] | None = None) -> dict[str, str]:
    """Method name -> `module:Class`: the index, every other method folder (of `roots`, the
    folders of `partedit_bench.methods`), then the methods other installed distributions
    register as entry points (read by path and by name: no method is imported here)."""
    from importlib.metadata import entry_points

    found = dict(INDEX)
    known = {target.split(":")[0].rsplit(".", 1)[-1] for target in found.values()}
    folders = [f for root in roots or [Path(__file__).parent / "methods"] for f in root.iterdir()]
    for folder in sorted(folders):
        if (folder / "__init__.py").is_file() and folder.name not in known:
            found[folder.name] = f"partedit_bench.methods.{folder.name}:METHOD"
            known.add(folder.name)
    for entry in entry_points(group=ENTRY_POINTS):
        found.setdefault(entry.name, entry.value)
    return found
