"""The diffusion engine every method shares: backbones (`backbones`, `registry`, `tiny`,
`clip_bpe`), attention processors (`attention`), inversions (`inversion`), prompt-word alignment
(`alignment`)."""
