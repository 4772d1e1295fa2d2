"""Every preset is consistent with what is known of its model and with what the loaders accept.

Nothing is downloaded: the facts below are the models' published config.json values
(`num_hidden_layers`, `hidden_size`, `model_type`), recorded here from memory of those files and the
model cards (the hub is not reachable from where this was written), so a typo in presets.py has to
agree with an independent record to pass.
"""

from __future__ import annotations

import re

import pytest

from attrgraph.engine.hub import parse_hub_ref
from attrgraph.engine.models import SUPPORTED_FAMILIES
from attrgraph.engine.transcoders.loading import check_output_hook, input_site_for_hook
from attrgraph.presets import PRESETS, Preset, UnknownPreset, get_preset

# model repo -> (family, n_layers, d_model); source: each repo's config.json
FACTS: dict[str, tuple[str, int, int]] = {
    "google/gemma-2-2b": ("gemma2", 26, 2304),
    "meta-llama/Llama-3.2-1B": ("llama", 16, 2048),
    "meta-llama/Llama-3.1-8B-Instruct": ("llama", 32, 4096),
    "Qwen/Qwen3-0.6B": ("qwen3", 28, 1024),
    "Qwen/Qwen3-1.7B": ("qwen3", 28, 2048),
    "Qwen/Qwen3-4B": ("qwen3", 36, 2560),
    "Qwen/Qwen3-8B": ("qwen3", 36, 4096),
    "Qwen/Qwen3-14B": ("qwen3", 40, 5120),
    # Gemma 3: text_config of the multimodal 4b/12b/27b checkpoints
    **{f"google/gemma-3-270m{s}": ("gemma3", 18, 640) for s in ("", "-it")},
    **{f"google/gemma-3-1b-{t}": ("gemma3", 26, 1152) for t in ("pt", "it")},
    **{f"google/gemma-3-4b-{t}": ("gemma3", 34, 2560) for t in ("pt", "it")},
    **{f"google/gemma-3-12b-{t}": ("gemma3", 48, 3840) for t in ("pt", "it")},
    **{f"google/gemma-3-27b-{t}": ("gemma3", 62, 5376) for t in ("pt", "it")},
}
# transcoder repos named by circuit-tracer's README ("Available Transcoders") and its loaders
PUBLISHED_SETS = {
    "mwhanna/gemma-scope-transcoders",
    "mntss/clt-gemma-2-2b-426k",
    "mntss/clt-gemma-2-2b-2.5M",
    "mntss/transcoder-Llama-3.2-1B",
    "mntss/clt-llama-3.2-1b-524k",
    "mwhanna/qwen3-0.6b-transcoders-lowl0",
    "mwhanna/qwen3-1.7b-transcoders-lowl0",
    "mwhanna/qwen3-4b-transcoders",
    "mwhanna/qwen3-8b-transcoders",
    "mwhanna/qwen3-14b-transcoders-lowl0",
    "facebook/crv-8b-instruct-transcoders",
    *(
        f"mwhanna/gemma-scope-2-{size}-{t}"
        for size in ("270m", "1b", "4b", "12b", "27b")
        for t in ("pt", "it")
    ),
}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@pytest.mark.parametrize("preset", list(PRESETS.values()), ids=list(PRESETS))
def test_preset_matches_its_model_and_the_loaders(preset: Preset) -> None:
    assert (preset.family, preset.n_layers, preset.d_model) == FACTS[preset.model]
    assert preset.family in SUPPORTED_FAMILIES
    input_site_for_hook(preset.input_hook)  # raises for a hook the loader does not read
    check_output_hook(preset.output_hook)
    ref = parse_hub_ref(preset.transcoders_ref)
    assert ref is not None and ref.revision == preset.transcoders_revision
    assert ref.repo_id in PUBLISHED_SETS
    for revision in (preset.model_revision, preset.transcoders_revision):
        assert _COMMIT.match(revision) or (revision == "main" and "revision" in preset.unverified)
    assert preset.kind in ("plt", "clt") and (preset.kind == "clt") == ("clt" in preset.transcoders)
    assert 0.5 < preset.download_gb < 300
    assert set(preset.unverified) <= {"revision", "transcoders", "input_hook", "output_hook", "download_gb"}


def test_the_required_presets_exist() -> None:
    names = set(PRESETS)
    assert {
        "gemma-2-2b",
        "gemma-2-2b-clt-426k",
        "gemma-2-2b-clt-2.5m",
        "llama-3.2-1b",
        "llama-3.2-1b-clt",
    } <= names
    assert {f"qwen3-{s}" for s in ("0.6b", "1.7b", "4b", "8b", "14b")} <= names
    sizes = ("270m", "1b", "4b", "12b", "27b")
    assert {f"gemma-3-{s}-{t}{c}" for s in sizes for t in ("pt", "it") for c in ("", "-clt")} <= names
    assert "llama-3.1-8b-instruct" in names
    assert all(name == name.lower() for name in names)
    # the published sizes this project knows: the 2.5M CLT alone is about 160 GB
    assert PRESETS["gemma-2-2b-clt-2.5m"].download_gb > 160


def test_get_preset() -> None:
    assert get_preset("Gemma-2-2B") is PRESETS["gemma-2-2b"]
    with pytest.raises(UnknownPreset, match=r"unknown preset 'gpt-5'.*gemma-2-2b"):
        get_preset("gpt-5")
