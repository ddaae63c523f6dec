"""The shipped default backbone, in one place: `model` (its configuration, training data and
components), `train` (the staged, resumable trainer), `checkpoints`, `evaluate` (prompt
following, read by an attribute classifier). The PartWorld renderer itself is
`partedit_bench.data.partworld`.

The PartWorld backbone: a small SD-family text-to-image model trained from scratch on
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
