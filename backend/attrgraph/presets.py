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


@dataclass(frozen=True)
class _Model:
    repo: str
    family: str
    n_layers: int
    d_model: int


# The hooks each kind of set reads and writes, unless a preset names others.
_HOOKS = {"plt": ("mlp.hook_in", "mlp.hook_out"), "clt": ("hook_resid_mid", "hook_mlp_out")}
_MAIN = ("main", "main")


def _preset(
    name: str,
    model: _Model,
    transcoders: str,
    kind: str,
    download_gb: float,
    unverified: tuple[str, ...],
    notes: str = "",
    *,
    revisions: tuple[str, str] = _MAIN,  # model's, transcoders'
    hooks: tuple[str, str] | None = None,
) -> Preset:
    input_hook, output_hook = hooks or _HOOKS[kind]
    return Preset(
        name=name,
        model=model.repo,
        model_revision=revisions[0],
        transcoders=transcoders,
        transcoders_revision=revisions[1],
        family=model.family,
        n_layers=model.n_layers,
        d_model=model.d_model,
        kind=kind,
        input_hook=input_hook,
        output_hook=output_hook,
        download_gb=download_gb,
        unverified=unverified,
        notes=notes,
    )


_GEMMA3 = {"270m": (18, 640, 0.55), "1b": (26, 1152, 2.0), "4b": (34, 2560, 8.6), "12b": (48, 3840, 24.4)}
_GEMMA3["27b"] = (62, 5376, 54.9)
_QWEN3 = {
    "0.6b": ("Qwen/Qwen3-0.6B", 28, 1024, 1.5, "-lowl0"),
    "1.7b": ("Qwen/Qwen3-1.7B", 28, 2048, 4.1, "-lowl0"),
    "4b": ("Qwen/Qwen3-4B", 36, 2560, 8.0, ""),
    "8b": ("Qwen/Qwen3-8B", 36, 4096, 16.4, ""),
    "14b": ("Qwen/Qwen3-14B", 40, 5120, 29.5, "-lowl0"),
}
_PINNED_270M_PT = ("9b0cfec892e2bc2afd938c98eabe4e4a7b1e0ca1", "fada11860ac1d337c1e41e9da308798405b94c8e")


def _gemma3_presets() -> list[Preset]:
    presets = []
    for size, (n_layers, d_model, model_gb) in _GEMMA3.items():
        for tune in ("pt", "it"):
            repo = f"google/gemma-3-{size}" + ("-it" if tune == "it" else "" if size == "270m" else "-pt")
            model = _Model(repo, "gemma3", n_layers, d_model)
            scope = f"mwhanna/gemma-scope-2-{size}-{tune}"
            # per layer: W_enc + W_dec, 16384 x d_model, float32 (matches the 1.51 GB recorded for 270m-pt)
            plt_gb = round(n_layers * 2 * 16384 * d_model * 4 / 1e9, 1)
            # 262k features in all, each layer's decoding into every later layer, float32
            clt_gb = round(262144 * (n_layers + 1) / 2 * d_model * 4 / 1e9, 1)
            pinned = size == "270m" and tune == "pt"
            presets.append(
                _preset(
                    f"gemma-3-{size}-{tune}",
                    model,
                    f"{scope}/transcoder_all/width_16k_l0_small" + ("" if pinned else "_affine"),
                    "plt",
                    2.1 if pinned else round(model_gb + plt_gb, 1),
                    ("input_hook", "output_hook")
                    + (() if pinned else ("revision", "transcoders", "download_gb")),
                    "Gemma Scope 2 PLTs re-hosted for circuit-tracer, which loads them with its "
                    "gemma-scope-2 loader"
                    + ("; revisions and size from a third-party run record" if pinned else ""),
                    revisions=_PINNED_270M_PT if pinned else _MAIN,
                )
            )
            presets.append(
                _preset(
                    f"gemma-3-{size}-{tune}-clt",
                    model,
                    f"{scope}/clt/width_262k_l0_medium_affine",
                    "clt",
                    round(model_gb + clt_gb, 1),
                    ("revision", "transcoders", "input_hook", "output_hook", "download_gb"),
                    "Gemma Scope 2 CLT; subfolder seen for 1b-pt only, assumed for the others",
                )
            )
    return presets


def _qwen3_presets() -> list[Preset]:
    return [
        _preset(
            f"qwen3-{size}",
            _Model(repo, "qwen3", n_layers, d_model),
            f"mwhanna/qwen3-{size}-transcoders{suffix}",
            "plt",
            # transcoders: about as large as the model again per layer pair (estimate, unverified)
            round(model_gb * 3, 1),
            ("revision", "download_gb") + (() if size == "4b" else ("input_hook", "output_hook")),
            "repo names from circuit-tracer's README; hooks recorded for qwen3-4b's config.yaml",
        )
        for size, (repo, n_layers, d_model, model_gb, suffix) in _QWEN3.items()
    ]


_GEMMA2_2B = _Model("google/gemma-2-2b", "gemma2", 26, 2304)
_LLAMA_1B = _Model("meta-llama/Llama-3.2-1B", "llama", 16, 2048)
_LLAMA_8B_IT = _Model("meta-llama/Llama-3.1-8B-Instruct", "llama", 32, 4096)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _preset(
            "gemma-2-2b",
            _GEMMA2_2B,
            "mwhanna/gemma-scope-transcoders",
            "plt",
            18.0,  # 10.5 GB float32 model + 26 GemmaScope .npz files of about 288 MiB
            ("revision", "input_hook"),
            "circuit-tracer's `gemma`; its config.yaml lists hf://google/gemma-scope-2b-pt-"
            "transcoders/layer_{i}/width_16k/average_l0_{n}/params.npz (gated: accept Gemma's terms)",
            hooks=("ln2.hook_normalized", "hook_mlp_out"),
        ),
        _preset(
            "gemma-2-2b-clt-426k",
            _GEMMA2_2B,
            "mntss/clt-gemma-2-2b-426k",
            "clt",
            38.0,  # 10.5 GB model + ~27 GB bfloat16 CLT (estimate)
            ("revision", "input_hook", "download_gb"),
        ),
        _preset(
            "gemma-2-2b-clt-2.5m",
            _GEMMA2_2B,
            "mntss/clt-gemma-2-2b-2.5M",
            "clt",
            170.0,  # 10.5 GB model + ~160 GB CLT
            ("revision", "input_hook"),
        ),
        _preset(
            "llama-3.2-1b",
            _LLAMA_1B,
            "mntss/transcoder-Llama-3.2-1B",
            "plt",
            20.0,  # 2.5 GB model + ~17 GB skip transcoders (estimate)
            ("revision", "input_hook", "output_hook", "download_gb"),
            "circuit-tracer's `llama`; the model is gated (accept Meta's license)",
        ),
        _preset(
            "llama-3.2-1b-clt",
            _LLAMA_1B,
            "mntss/clt-llama-3.2-1b-524k",
            "clt",
            22.0,  # 2.5 GB model + ~19 GB bfloat16 CLT (estimate)
            ("revision", "input_hook", "download_gb"),
        ),
        _preset(
            "llama-3.1-8b-instruct",
            _LLAMA_8B_IT,
            "facebook/crv-8b-instruct-transcoders",
            "plt",
            80.0,  # 16 GB model + TopK transcoders (estimate)
            ("revision", "input_hook", "output_hook", "download_gb"),
            "TopK per-layer transcoders; the model is gated (accept Meta's license)",
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
