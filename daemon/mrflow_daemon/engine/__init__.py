"""The MrFlow engine: staged generation on diffusers components.

Read in this order: `presets` (named settings), `request` (what is asked),
`plan` (pure arithmetic: sizes, sigmas, seeds), `families` (one adapter per
model family), `sampler` (the staged sampler, written once against an
adapter), `pipeline` (loading and the public `MrFlowEngine`).
"""
