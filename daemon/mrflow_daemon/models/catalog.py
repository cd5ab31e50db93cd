"""The models MrFlow knows by name: what they are, where they come from, how big they are.

Three kinds of entry:

* `PipelineEntry`: a diffusion pipeline in diffusers format on the Hugging Face Hub, pulled
  with `huggingface_hub.snapshot_download` into `paths.models_dir() / NAME`.
* `WeightsEntry`: a single upscaler weights file from its official release URL, pulled by our
  own resumable downloader into `paths.upscalers_dir() / FILENAME` and checked against the
  SHA-256 below before it is moved into place.
* `BuiltinEntry`: the tiny model that ships with the engine (no download).

About the Real-ESRGAN checksums: GitHub is out of reach from the machine this was written on, so
the hashes could not be recomputed from the release files here. Each one below is the SHA-256 and
byte size that several independent Hugging Face mirrors of the same file publish in their Git LFS
pointers (e.g. nateraw/real-esrgan, ad-astra-video/upscalers, 2kpr/Real-ESRGAN for x2plus;
fofr/comfyui, chaowenguo/pal, wei112/ziyong for x4plus), and a public script that pins the
official v0.2.1 x2plus URL to the same hash. They all agree. `mrflow models pull` refuses a file
whose hash differs, so a wrong value here fails loudly and never installs a bad file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["pipeline", "upscaler", "builtin"]

HF_TOKEN_HELP = (
    "{name} is gated on Hugging Face: before it can be downloaded you must\n"
    "  1. sign in at https://huggingface.co and accept the licence on https://huggingface.co/{repo_id}\n"
    "  2. create an access token (Settings > Access Tokens, 'read' is enough) and either run\n"
    "     `hf auth login` once, or set the environment variable HF_TOKEN to the token\n"
    "then run `mrflow models pull {name}` again."
)


@dataclass(frozen=True)
class PipelineEntry:
    """A diffusers-format pipeline on the Hugging Face Hub."""

    name: str
    repo_id: str
    family: str  # the engine's family name: "flux-schnell" | "flux-dev" | "qwen-image"
    license: str
    description: str
    approx_download_gb: float  # for the catalog listing; `pull` checks the exact size first
    gated: bool = False
    aliases: tuple[str, ...] = ()
    kind: Kind = field(default="pipeline", init=False)

    @property
    def page_url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"

    def token_help(self) -> str:
        return HF_TOKEN_HELP.format(name=self.name, repo_id=self.repo_id)


@dataclass(frozen=True)
class WeightsEntry:
    """A single weights file with a published SHA-256."""

    name: str
    url: str
    filename: str
    sha256: str
    size_bytes: int
    scale: int
    license: str
    description: str
    aliases: tuple[str, ...] = ()
    kind: Kind = field(default="upscaler", init=False)


@dataclass(frozen=True)
class BuiltinEntry:
    """The tiny model the engine makes locally on first use (no download, no licence step)."""

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    kind: Kind = field(default="builtin", init=False)


CatalogEntry = PipelineEntry | WeightsEntry | BuiltinEntry

# The real model `mrflow models pull` fetches when no name is given: Apache-2.0, not gated.
DEFAULT_MODEL = "FLUX.1-schnell"
BUILTIN_MODEL = "builtin"

CATALOG: tuple[CatalogEntry, ...] = (
    PipelineEntry(
        name="FLUX.1-schnell",
        repo_id="black-forest-labs/FLUX.1-schnell",
        family="flux-schnell",
        license="Apache-2.0",
        description="FLUX.1 [schnell]: distilled for few steps, free for any use",
        approx_download_gb=33.7,
        aliases=("flux-schnell", "flux.1-schnell", "schnell"),
    ),
    PipelineEntry(
        name="FLUX.1-dev",
        repo_id="black-forest-labs/FLUX.1-dev",
        family="flux-dev",
        license="FLUX.1 [dev] Non-Commercial License",
        description="FLUX.1 [dev]: the MrFlow paper's reference model; gated, non-commercial",
        approx_download_gb=33.7,
        gated=True,
        aliases=("flux-dev", "flux.1-dev", "dev"),
    ),
    PipelineEntry(
        name="Qwen-Image",
        repo_id="Qwen/Qwen-Image",
        family="qwen-image",
        license="Apache-2.0",
        description="Qwen-Image: 20B model, strong at lettering; needs a large GPU",
        approx_download_gb=57.7,
        aliases=("qwen-image", "qwen"),
    ),
    WeightsEntry(
        name="RealESRGAN_x2plus",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
        filename="RealESRGAN_x2plus.pth",
        sha256="49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
        size_bytes=67_061_725,
        scale=2,
        license="BSD-3-Clause",
        description="Real-ESRGAN x2plus: the 2x upscaler of the 12+1 recipe",
        aliases=("realesrgan-x2plus", "x2plus"),
    ),
    WeightsEntry(
        name="RealESRGAN_x4plus",
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
        filename="RealESRGAN_x4plus.pth",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        size_bytes=67_040_989,
        scale=4,
        license="BSD-3-Clause",
        description="Real-ESRGAN x4plus: for 4x jumps (512 to 2048)",
        aliases=("realesrgan-x4plus", "x4plus"),
    ),
    BuiltinEntry(
        name=BUILTIN_MODEL,
        description="the built-in shapes model (7M-parameter FLUX architecture, trained by the "
        "project, shipped with MrFlow): for trying things out, not for art",
        aliases=("built-in", "tiny"),
    ),
)


def find_entry(name: str) -> CatalogEntry | None:
    """The catalog entry called `name` (case-insensitive; aliases and Hub repo ids work too)."""
    wanted = name.strip().casefold()
    for entry in CATALOG:
        names = {entry.name, *entry.aliases}
        if isinstance(entry, PipelineEntry):
            names.add(entry.repo_id)
        if wanted in {n.casefold() for n in names}:
            return entry
    return None


def catalog_names() -> list[str]:
    return [entry.name for entry in CATALOG]
