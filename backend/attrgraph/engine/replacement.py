"""The local replacement model: one forward pass, cached, that attribution differentiates.

In this pass every MLP's output is replaced by a *leaf* tensor holding its true value. The leaf's
value is features' decoder sum + decoder bias + error, so the logits do not change, but gradients
stop there: a backward pass from any target reaches the MLP write sites and the layer-0 residual
(embeddings) through attention and norms only, which are frozen, so the gradient at a write site is
exactly the direct-effect direction of anything written there. The skip connection of a transcoder
(if any) is linear in its input, so it stays on the gradient path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attrgraph.engine.adapter import ModelAdapter
from attrgraph.engine.linearize import FrozenState, linearized, normalized_input
from attrgraph.engine.transcoders.base import InputSite, TranscoderSet


class IncompatibleTranscodersError(ValueError):
    """The transcoders do not fit the model (layers or width differ)."""


@dataclass
class SparseActivations:
    """Active features of one layer: positions, feature indices, activation values."""

    positions: Tensor  # (n,) int64
    features: Tensor  # (n,) int64
    values: Tensor  # (n,) float


@dataclass
class ForwardCache:
    """Everything attribution needs from the one forward pass."""

    token_ids: Tensor  # (pos,)
    excluded_positions: int  # leading positions whose features live in the error node (BOS)
    logits: Tensor  # (pos, vocab) the model's real logits, detached
    resid0: Tensor  # (1, pos, d_model) leaf: the residual stream entering layer 0
    token_embeddings: Tensor  # (pos, d_model) the part of resid0 token nodes own (no position embedding)
    tc_inputs: list[Tensor]  # per layer (1, pos, d_model), on the gradient graph
    write_leaves: list[Tensor]  # per layer (1, pos, d_model) leaves at the MLP write sites
    final_hidden: Tensor  # (1, pos, d_model) final-norm output, on the gradient graph
    activations: list[SparseActivations]
    errors: list[Tensor]  # per layer (pos, d_model): true MLP output - transcoder output
    mlp_outputs: list[Tensor]  # per layer (pos, d_model), detached
    write_constants: list[Tensor]  # per layer (pos, d_model): MLP output minus its skip term
    frozen: FrozenState


class ReplacementModel:
    """A Hugging Face causal LM with transcoders attached at every MLP."""

    def __init__(self, model: nn.Module, transcoders: TranscoderSet) -> None:
        self.model = model
        self.adapter = ModelAdapter.for_model(model)
        self.transcoders = transcoders
        if transcoders.n_layers != self.adapter.n_layers:
            raise IncompatibleTranscodersError(
                f"transcoders cover {transcoders.n_layers} layers, the model has {self.adapter.n_layers}"
            )
        if transcoders.d_model != self.adapter.d_model:
            raise IncompatibleTranscodersError(
                f"transcoders read width {transcoders.d_model}, "
                f"the model's residual stream is {self.adapter.d_model} wide"
            )

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    def run(self, token_ids: Tensor, *, exclude_positions: int = 0, record: bool = False) -> ForwardCache:
        """The attribution forward pass (keeps its autograd graph for many backward passes).

        exclude_positions: the first n positions' features are not features (their output is left
        in the error node), as is customary for the BOS position, whose features dominate.
        record: also store attention patterns and norm scales for `replay`.
        """
        n_layers = self.n_layers
        tc_inputs: list[Tensor | None] = [None] * n_layers
        leaves: list[Tensor | None] = [None] * n_layers
        outputs: list[Tensor | None] = [None] * n_layers
        constants: list[Tensor | None] = [None] * n_layers
        captured: dict[str, Tensor] = {}
        tc = self.transcoders

        def on_resid0(x: Tensor) -> Tensor:
            leaf = x.detach().clone().requires_grad_(True)
            captured["resid0"] = leaf
            return leaf

        def on_tc_input(layer: int, x: Tensor) -> None:
            tc_inputs[layer] = x

        def on_write(layer: int, out: Tensor) -> Tensor:
            x_in = tc_inputs[layer]
            assert x_in is not None
            true_out = out.detach()[0]
            outputs[layer] = true_out
            skip = tc.skip(layer, x_in)
            constants[layer] = true_out if skip is None else true_out - skip.detach()[0].to(true_out.dtype)
            leaf = out.detach().clone().requires_grad_(True)
            leaves[layer] = leaf
            if skip is None:
                return leaf
            # Zero in value, linear in the input: keeps the skip path differentiable.
            return leaf + (skip - skip.detach()).to(leaf.dtype)

        state = FrozenState(recording=record)
        # linearized() first: its norm-freezing hooks must run before the capture hooks see outputs.
        with linearized(self.adapter, state), self.hooks(on_resid0, on_tc_input, on_write, captured):
            logits = self.model(input_ids=token_ids[None]).logits[0].detach().float()

        # Features are encoded after the pass: the leaves hold the true MLP outputs whatever the
        # features are, and a global TopK set needs every layer's input before it can select.
        inputs = [_present(t).detach()[0] for t in tc_inputs]  # per layer (pos, d_model)
        acts_dense = tc.encode_all(inputs)  # per layer (pos, d_transcoder)
        sparse: list[SparseActivations] = []
        errors: list[Tensor] = []
        for acts in acts_dense:
            if exclude_positions:
                acts[:exclude_positions] = 0
            pos_idx, feat_idx = acts.nonzero(as_tuple=True)
            sparse.append(SparseActivations(pos_idx, feat_idx, acts[pos_idx, feat_idx]))
        for layer in range(n_layers):
            constant = _present(constants[layer])
            recon = self._reconstruct_layer(layer, acts_dense, inputs[layer])
            errors.append(constant - recon.to(constant.dtype))

        return ForwardCache(
            token_ids=token_ids,
            excluded_positions=exclude_positions,
            logits=logits,
            resid0=captured["resid0"],
            token_embeddings=self._token_part(captured),
            tc_inputs=[_present(t) for t in tc_inputs],
            write_leaves=[_present(t) for t in leaves],
            final_hidden=captured["final_hidden"],
            activations=sparse,
            errors=errors,
            mlp_outputs=[_present(o) for o in outputs],
            write_constants=[_present(c) for c in constants],
            frozen=state,
        )

    @staticmethod
    def _token_part(captured: dict[str, Tensor]) -> Tensor:
        """resid0 minus absolute position embeddings (GPT-2's wpe): those are the same for every
        prompt, so, as in circuit-tracer, they count as bias rather than as part of a token node."""
        resid0 = captured["resid0"].detach()[0]
        positions = captured.get("positions")
        if positions is None:
            return resid0
        return resid0 - positions.reshape(-1, resid0.shape[-1])[-resid0.shape[0] :].to(resid0.dtype)

    @torch.no_grad()
    def replay(
        self, cache: ForwardCache, *, resid0: Tensor, writes: list[Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        """Rerun the frozen model (recorded patterns and norm scales) with new sources.

        resid0: (pos, d_model) residual entering layer 0; writes[l]: (pos, d_model) the constant part
        written at layer l's MLP site (skip connections are recomputed from the new inputs).
        Returns each layer's transcoder input (pos, d_model) and the final-norm output (pos, d_model).
        """
        if not cache.frozen.recording or not cache.frozen.patterns:
            raise ValueError("replay needs a cache from run(..., record=True)")
        tc_inputs: list[Tensor | None] = [None] * self.n_layers
        captured: dict[str, Tensor] = {}
        tc = self.transcoders

        def on_resid0(x: Tensor) -> Tensor:
            return resid0[None].to(x.dtype)

        def on_tc_input(layer: int, x: Tensor) -> None:
            tc_inputs[layer] = x

        def on_write(layer: int, out: Tensor) -> Tensor:
            x_in = tc_inputs[layer]
            assert x_in is not None
            skip = tc.skip(layer, x_in)
            value = writes[layer][None].to(out.dtype)
            return value if skip is None else value + skip.to(out.dtype)

        replay_state = FrozenState(
            replaying=True, patterns=cache.frozen.patterns, norm_scales=cache.frozen.norm_scales
        )
        with linearized(self.adapter, replay_state), self.hooks(on_resid0, on_tc_input, on_write, captured):
            self.model(input_ids=cache.token_ids[None])
        return [_present(t)[0] for t in tc_inputs], captured["final_hidden"][0]

    @torch.no_grad()
    def replacement_logits(self, cache: ForwardCache) -> Tensor:
        """Logits of the replacement model: nothing frozen, every MLP replaced by its transcoder.

        Features are recomputed from the replacement model's own residual stream and the cached
        error vectors are added back, so this equals the original logits exactly when the hooks,
        sites and transcoder maths are right. (pos, vocab)
        """
        acts: list[Tensor | None] = [None] * self.n_layers
        tc_inputs: list[Tensor | None] = [None] * self.n_layers
        tc = self.transcoders

        def on_write(layer: int, out: Tensor) -> Tensor:
            x_in = tc_inputs[layer]
            assert x_in is not None
            if tc.selects_across_layers:
                # Later layers' inputs do not exist yet: keep the cached selection, recompute values.
                found = cache.activations[layer]
                pre = tc.pre_activations(layer, x_in[0])  # (pos, d_transcoder)
                selected = torch.zeros_like(pre, dtype=torch.bool)
                selected[found.positions, found.features] = True
                layer_acts = tc.activate_selected(layer, pre, selected)
            else:
                layer_acts = tc.encode(layer, x_in[0])
            layer_acts[: cache.excluded_positions] = 0
            acts[layer] = layer_acts
            recon = self._reconstruct_layer(layer, acts, x_in[0])
            skip = tc.skip(layer, x_in[0])
            if skip is not None:
                recon = recon + skip
            return (recon.to(out.dtype) + cache.errors[layer])[None]

        with self.hooks(lambda x: x, lambda layer, x: tc_inputs.__setitem__(layer, x), on_write, {}):
            logits: Tensor = self.model(input_ids=cache.token_ids[None]).logits[0].float()
        return logits

    def _reconstruct_layer(self, layer: int, acts: Sequence[Tensor | None], x: Tensor) -> Tensor:
        """Transcoder output at `layer` (without skip): decoder sum of all sources + bias."""
        tc = self.transcoders
        params = tc.layer(layer)
        recon = params.b_dec.expand(x.shape[0], -1).clone()
        sources = range(layer + 1) if tc.cross_layer else [layer]
        for source in sources:
            source_acts = acts[source]
            assert source_acts is not None
            recon = recon + source_acts.to(params.b_dec.dtype) @ tc.layer(source).W_dec[:, layer - source]
        return recon

    @contextmanager
    def hooks(
        self, on_resid0: Any, on_tc_input: Any, on_write: Any, captured: dict[str, Tensor]
    ) -> Iterator[ModelAdapter]:
        """Hooks on the residual entering layer 0, each transcoder input, each MLP write site and
        the final norm (kept in `captured["final_hidden"]`); callbacks may return replacements."""
        adapter = self.adapter
        site = self.transcoders.input_site
        with ExitStack() as stack:

            def layer0_pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if args:
                    return (on_resid0(args[0]), *args[1:]), kwargs
                kwargs = dict(kwargs, hidden_states=on_resid0(kwargs["hidden_states"]))
                return args, kwargs

            stack.enter_context(
                _removing(adapter.layers[0].register_forward_pre_hook(layer0_pre, with_kwargs=True))
            )
            for layer, norm in enumerate(adapter.pre_mlp_norms):

                def norm_hook(
                    module: nn.Module, args: tuple[Any, ...], output: Tensor, layer: int = layer
                ) -> None:
                    if site is InputSite.MLP_IN:
                        on_tc_input(layer, output)
                    elif site is InputSite.RESID_MID:
                        on_tc_input(layer, args[0])
                    else:
                        on_tc_input(layer, normalized_input(module, args[0]))

                stack.enter_context(_removing(norm.register_forward_hook(norm_hook)))
            for layer, module in enumerate(adapter.mlp_write_sites):

                def write_hook(
                    module: nn.Module, args: tuple[Any, ...], output: Tensor, layer: int = layer
                ) -> Tensor:
                    return on_write(layer, output)  # type: ignore[no-any-return]

                stack.enter_context(_removing(module.register_forward_hook(write_hook)))

            def final_hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
                captured["final_hidden"] = output

            def position_hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
                captured["positions"] = output.detach()

            if adapter.position_embedding is not None:
                stack.enter_context(
                    _removing(adapter.position_embedding.register_forward_hook(position_hook))
                )

            stack.enter_context(_removing(adapter.final_norm.register_forward_hook(final_hook)))
            yield adapter


@contextmanager
def _removing(handle: torch.utils.hooks.RemovableHandle) -> Iterator[None]:
    try:
        yield
    finally:
        handle.remove()


def _present(value: Any) -> Any:
    if value is None:
        raise RuntimeError("a hook did not fire: the model's forward did not visit every layer")
    return value
