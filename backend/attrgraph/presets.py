"""Presets: short names for the published model + transcoder pairs (`attrgraph pull gemma-2-2b`).

Plain data, checked by tests/test_presets.py against architecture facts recorded there with their
sources. Nothing here was downloaded from the real hub: every value comes from circuit-tracer's README
and loaders or from the repositories' published configs as recorded in public code, and `unverified`
names the fields that no such record confirmed (docs/models.md says what each preset downloads).

A revision is a commit hash where one was found, else "main" (with "revision" in `unverified`): a
pinned pair downloads the same bytes tomorrow; a "main" one follows the repository.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "Preset", "UnknownPreset", "get_preset"]


class UnknownPreset(KeyError):
    """Not a preset name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Preset:
    name: str
    model: str  # hub repository of the model
    model_revision: str
    transcoders: str  # hub reference of the set: org/name[/subfolder]
    transcoders_revision: str
    family: str  # one of attrgraph.engine.models.SUPPORTED_FAMILIES
    n_layers: int
    d_model: int
    kind: str  # "plt" (per-layer) or "clt" (cross-layer)
    input_hook: str  # the set's feature_input_hook (TransformerLens name)
    output_hook: str
    download_gb: float  # model + transcoders, approximate
    unverified: tuple[str, ...] = ()  # fields no public record confirmed
    notes: str = ""

    @property
    def model_ref(self) -> str:
        return f"{self.model}@{self.model_revision}"

    @property
    def transcoders_ref(self) -> str:
        return f"{self.transcoders}@{self.transcoders_revision}"

    @property
    def transcoder_set_name(self) -> str:
        """The set's name in the service (`ModelSpec.transcoders` key)."""
        return self.kind


_GEMMA3 = {"270m": (18, 640, 0.55), "1b": (26, 1152, 2.0), "4b": (34, 2560, 8.6), "12b": (48, 3840, 24.4)}
_GEMMA3["27b"] = (62, 5376, 54.9)
_QWEN3 = {
    "0.6b": ("Qwen/Qwen3-0.6B", 28, 1024, 1.5, "-lowl0"),
    "1.7b": ("Qwen/Qwen3-1.7B", 28, 2048, 4.1, "-lowl0"),
    "4b": ("Qwen/Qwen3-4B", 36, 2560, 8.0, ""),
    "8b": ("Qwen/Qwen3-8B", 36, 4096, 16.4, ""),
    "14b": ("Qwen/Qwen3-14B", 40, 5120, 29.5, "-lowl0"),
}


def _gemma3_presets() -> list[Preset]:
    presets = []
    for size, (n_layers, d_model, model_gb) in _GEMMA3.items():
        for tune in ("pt", "it"):
            model = f"google/gemma-3-{size}" + ("-it" if tune == "it" else "" if size == "270m" else "-pt")
            repo = f"mwhanna/gemma-scope-2-{size}-{tune}"
            # per layer: W_enc + W_dec, 16384 x d_model, float32 (matches the 1.51 GB recorded for 270m-pt)
            plt_gb = round(n_layers * 2 * 16384 * d_model * 4 / 1e9, 1)
            # 262k features in all, each layer's decoding into every later layer, float32
            clt_gb = round(262144 * (n_layers + 1) / 2 * d_model * 4 / 1e9, 1)
            pinned = size == "270m" and tune == "pt"
            presets.append(
                Preset(
                    name=f"gemma-3-{size}-{tune}",
                    model=model,
                    model_revision="9b0cfec892e2bc2afd938c98eabe4e4a7b1e0ca1" if pinned else "main",
                    transcoders=f"{repo}/transcoder_all/width_16k_l0_small" + ("" if pinned else "_affine"),
                    transcoders_revision="fada11860ac1d337c1e41e9da308798405b94c8e" if pinned else "main",
                    kind="plt",
                    input_hook="mlp.hook_in",
                    output_hook="mlp.hook_out",
                    download_gb=2.1 if pinned else round(model_gb + plt_gb, 1),
                    unverified=("input_hook", "output_hook")
                    + (() if pinned else ("revision", "transcoders", "download_gb")),
                    notes="Gemma Scope 2 PLTs re-hosted for circuit-tracer, which loads them with its "
                    "gemma-scope-2 loader"
                    + ("; revisions and size from a third-party run record" if pinned else ""),
                    family="gemma3",
                    n_layers=n_layers,
                    d_model=d_model,
                )
            )
            presets.append(
                Preset(
                    name=f"gemma-3-{size}-{tune}-clt",
                    model=model,
                    model_revision="main",
                    transcoders=f"{repo}/clt/width_262k_l0_medium_affine",
                    transcoders_revision="main",
                    kind="clt",
                    input_hook="hook_resid_mid",
                    output_hook="hook_mlp_out",
                    download_gb=round(model_gb + clt_gb, 1),
                    unverified=("revision", "transcoders", "input_hook", "output_hook", "download_gb"),
                    notes="Gemma Scope 2 CLT; subfolder seen for 1b-pt only, assumed for the others",
                    family="gemma3",
                    n_layers=n_layers,
                    d_model=d_model,
                )
            )
    return presets


def _qwen3_presets() -> list[Preset]:
    return [
        Preset(
            name=f"qwen3-{size}",
            model=model,
            model_revision="main",
            transcoders=f"mwhanna/qwen3-{size}-transcoders{suffix}",
            transcoders_revision="main",
            family="qwen3",
            n_layers=n_layers,
            d_model=d_model,
            kind="plt",
            input_hook="mlp.hook_in",
            output_hook="mlp.hook_out",
            # transcoders: about as large as the model again per layer pair (estimate, unverified)
            download_gb=round(model_gb * 3, 1),
            unverified=("revision", "download_gb") + (() if size == "4b" else ("input_hook", "output_hook")),
            notes="repo names from circuit-tracer's README; hooks recorded for qwen3-4b's config.yaml",
        )
        for size, (model, n_layers, d_model, model_gb, suffix) in _QWEN3.items()
    ]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="gemma-2-2b",
            model="google/gemma-2-2b",
            model_revision="main",
            transcoders="mwhanna/gemma-scope-transcoders",
            transcoders_revision="main",
            family="gemma2",
            n_layers=26,
            d_model=2304,
            kind="plt",
            input_hook="ln2.hook_normalized",
            output_hook="hook_mlp_out",
            download_gb=18.0,  # 10.5 GB float32 model + 26 GemmaScope .npz files of about 288 MiB
            unverified=("revision", "input_hook"),
            notes="circuit-tracer's `gemma`; its config.yaml lists hf://google/gemma-scope-2b-pt-"
            "transcoders/layer_{i}/width_16k/average_l0_{n}/params.npz (gated: accept Gemma's terms)",
        ),
        Preset(
            name="gemma-2-2b-clt-426k",
            model="google/gemma-2-2b",
            model_revision="main",
            transcoders="mntss/clt-gemma-2-2b-426k",
            transcoders_revision="main",
            family="gemma2",
            n_layers=26,
            d_model=2304,
            kind="clt",
            input_hook="hook_resid_mid",
            output_hook="hook_mlp_out",
            download_gb=38.0,  # 10.5 GB model + ~27 GB bfloat16 CLT (estimate)
            unverified=("revision", "input_hook", "download_gb"),
        ),
        Preset(
            name="gemma-2-2b-clt-2.5m",
            model="google/gemma-2-2b",
            model_revision="main",
            transcoders="mntss/clt-gemma-2-2b-2.5M",
            transcoders_revision="main",
            family="gemma2",
            n_layers=26,
            d_model=2304,
            kind="clt",
            input_hook="hook_resid_mid",
            output_hook="hook_mlp_out",
            download_gb=170.0,  # 10.5 GB model + ~160 GB CLT
            unverified=("revision", "input_hook"),
        ),
        Preset(
            name="llama-3.2-1b",
            model="meta-llama/Llama-3.2-1B",
            model_revision="main",
            transcoders="mntss/transcoder-Llama-3.2-1B",
            transcoders_revision="main",
            family="llama",
            n_layers=16,
            d_model=2048,
            kind="plt",
            input_hook="mlp.hook_in",
            output_hook="mlp.hook_out",
            download_gb=20.0,  # 2.5 GB model + ~17 GB skip transcoders (estimate)
            unverified=("revision", "input_hook", "output_hook", "download_gb"),
            notes="circuit-tracer's `llama`; the model is gated (accept Meta's license)",
        ),
        Preset(
            name="llama-3.2-1b-clt",
            model="meta-llama/Llama-3.2-1B",
            model_revision="main",
            transcoders="mntss/clt-llama-3.2-1b-524k",
            transcoders_revision="main",
            family="llama",
            n_layers=16,
            d_model=2048,
            kind="clt",
            input_hook="hook_resid_mid",
            output_hook="hook_mlp_out",
            download_gb=22.0,  # 2.5 GB model + ~19 GB bfloat16 CLT (estimate)
            unverified=("revision", "input_hook", "download_gb"),
        ),
        Preset(
            name="llama-3.1-8b-instruct",
            model="meta-llama/Llama-3.1-8B-Instruct",
            model_revision="main",
            transcoders="facebook/crv-8b-instruct-transcoders",
            transcoders_revision="main",
            family="llama",
            n_layers=32,
            d_model=4096,
            kind="plt",
            input_hook="mlp.hook_in",
            output_hook="mlp.hook_out",
            download_gb=80.0,  # 16 GB model + TopK transcoders (estimate)
            unverified=("revision", "input_hook", "output_hook", "download_gb"),
            notes="TopK per-layer transcoders; the model is gated (accept Meta's license)",
        ),
        *_qwen3_presets(),
        *_gemma3_presets(),
    ]
}


def get_preset(name: str) -> Preset:
    preset = PRESETS.get(name.lower())
    if preset is None:
        raise UnknownPreset(f"unknown preset {name!r}; `attrgraph models` lists them ({', '.join(PRESETS)})")
    return preset
