"""The real tracing backend: models and transcoders loaded with attrgraph.engine (torch).

Only worker processes import this module; the API never does. Models come from
settings.worker_models, or by default the embedded demo model with its transcoders and dashboards.
Requests become graphs and intervention results through attrgraph.tracing, as in the CLI, so both
refuse the same requests with the same messages (here as UserError: the job fails with it).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import torch

import attrgraph
from attrgraph.engine import (
    PromptError,
    TargetSpec,
    TraceSettings,
    interop,
    load_model,
    load_transcoders,
    trace,
)
from attrgraph.engine.attention import AttentionTracer
from attrgraph.engine.attention.ablation import HeadAblation
from attrgraph.engine.attention.requests import AttentionRequestError, edge_heads, head_qk
from attrgraph.engine.attribution import context_length
from attrgraph.engine.attribution import tokenize as engine_tokenize
from attrgraph.engine.chat import ChatError, has_chat_template, render_chat
from attrgraph.engine.estimate import Estimate, TraceShape, device_budget, trace_shape
from attrgraph.engine.estimate import estimate as estimate_trace
from attrgraph.engine.graph import Graph
from attrgraph.engine.interventions import FeatureIntervention, InterventionOptions, Mode
from attrgraph.engine.models import LoadedModel
from attrgraph.engine.pruning import PruneResult
from attrgraph.engine.transcoders.base import TranscoderSet
from attrgraph.format import qk
from attrgraph.format.feature_files import FeatureLookup, feature_lookup
from attrgraph.format.node_ids import parse_feature_id
from attrgraph.protocol.interventions import HeadAblationItem
from attrgraph.protocol.records import AttentionPayload, InterventionPayload, TracePayload
from attrgraph.protocol.schemas import ModelInfo, Prediction, Token, TranscoderInfo
from attrgraph.settings import ModelSpec, Settings
from attrgraph.tracing import TraceRequestError, intervene_request, qk_entries, trace_pruned
from attrgraph.worker.tracer import Progress, UserError

log = logging.getLogger("attrgraph.worker")

# Measures each transcoder set's feature density at load, for the memory and time estimates.
ESTIMATE_PROBE = (
    "The capital of the state containing Dallas is Austin. Two plus three is five, and the opposite "
    "of hot is cold. Alice gave the book to Bob because he had asked for it."
)


def demo_spec() -> ModelSpec:
    from attrgraph.bundled import demo_dir, demo_model_dir, demo_transcoders_dir

    return ModelSpec(
        name="demo",
        path=str(demo_model_dir()),
        transcoders={"demo": str(demo_transcoders_dir())},
        dashboards={"demo": str(demo_dir())},
    )


class TorchTracer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs = settings.worker_models or [demo_spec()]
        self._models: dict[str, LoadedModel] = {}
        self._transcoders: dict[str, TranscoderSet] = {}
        self._dashboards: dict[str, FeatureLookup] = {}
        # Worker-call threads share the tokenizer; HF fast tokenizers may raise "Already borrowed"
        # when two threads use one at once.
        self._tokenizer_lock = threading.Lock()
        # The last graph explained (id, graph, tracer): clicks on one graph reuse its recorded pass.
        self._attention: tuple[str, Graph, AttentionTracer] | None = None
        self._shapes: dict[tuple[str, str], TraceShape] = {}  # (model, transcoders) -> estimate input
        self._default_tc: dict[str, str] = {}

    def load(self) -> list[ModelInfo]:
        device = self.settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        infos = []
        for spec in self.specs:
            log.info("loading model %s from %s on %s", spec.name, spec.path, device)
            lm = load_model(spec.path, device=device, dtype=self.settings.dtype)
            self._models[spec.name] = lm
            transcoders = []
            for name, path in spec.transcoders.items():
                if name in self._transcoders:
                    raise ValueError(f"transcoder set name {name!r} is used twice; names must be unique")
                tc = load_transcoders(path, device=lm.device, dtype=lm.dtype)
                self._transcoders[name] = tc
                self._shapes[(spec.name, name)] = self._shape(lm, tc)
                root = spec.dashboards.get(name)
                # the configured dashboards, else what `attrgraph dashboards build` wrote next to the
                # transcoders, else circuit-tracer feature files shipped with them
                configured = Path(root) / "dashboards" if root else None
                lookup = feature_lookup(configured, Path(path) / "dashboards", Path(path) / "features")
                has_dashboards = lookup is not None
                if lookup is not None:
                    self._dashboards[name] = lookup
                transcoders.append(
                    TranscoderInfo(
                        name=name,
                        id=tc.name,
                        revision=tc.revision,
                        n_layers=tc.n_layers,
                        d_transcoder=tc.d_transcoder,
                        has_dashboards=has_dashboards,
                    )
                )
            infos.append(
                ModelInfo(
                    name=spec.name,
                    model_id=lm.model_id,
                    revision=lm.revision,
                    engine_version=attrgraph.__version__,
                    n_layers=getattr(lm.model.config, "num_hidden_layers", None),
                    transcoders=transcoders,
                    default_transcoders=spec.default_transcoders or next(iter(spec.transcoders)),
                    context_length=context_length(lm.model),
                    chat_template=has_chat_template(lm.tokenizer),
                    memory_budget_bytes=self._budget(lm),
                )
            )
            self._default_tc[spec.name] = infos[-1].default_transcoders
            if self.settings.warmup:
                self._warm_up(lm, self._transcoders[infos[-1].default_transcoders])
        return infos

    def _warm_up(self, lm: LoadedModel, tc: TranscoderSet) -> None:
        started = time.perf_counter()
        try:
            trace(lm, tc, "The capital of", settings=TraceSettings(max_feature_nodes=64, max_n_logits=1))
        except Exception:  # a model that cannot trace still serves tokenize and predictions
            log.exception("warm-up trace failed")
            return
        log.info("warm-up trace of %s took %.2fs", lm.model_id, time.perf_counter() - started)

    def _shape(self, lm: LoadedModel, tc: TranscoderSet) -> TraceShape:
        """The estimate's view of a pair; feature density measured on a short probe prompt."""
        try:
            ids = engine_tokenize(lm.tokenizer, ESTIMATE_PROBE)[:64]
            return trace_shape(lm.model, tc, ids)
        except Exception:  # a pair that cannot run the probe still gets a (rougher) estimate
            log.exception("feature-density probe failed")
            return trace_shape(lm.model, tc)

    def _budget(self, lm: LoadedModel) -> int | None:
        """What a trace may use: ATTRGRAPH_MEMORY_LIMIT_BYTES, else the device's free memory plus
        what this process already holds there."""
        return self.settings.memory_limit_bytes or device_budget(lm.device)

    def _estimate(self, model: str, transcoders: str, n_tokens: int, settings: TraceSettings) -> Estimate:
        lm = self._model(model)
        shape = self._shapes.get((model, transcoders or self._default_tc.get(model, "")))
        if shape is None:
            raise UserError(f"this worker has no transcoder set {transcoders!r} for {model!r}")
        return estimate_trace(shape, n_tokens, settings, budget_bytes=self._budget(lm))

    def estimate(
        self, model: str, transcoders: str, n_tokens: int, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Predicted peak memory, time and whether it fits this worker (engine/estimate.py), for a
        prompt of `n_tokens` traced with `settings` (GraphSettings' trace fields). Thread-safe."""
        known = ("max_n_logits", "max_feature_nodes", "max_edges_per_target")
        trace_settings = TraceSettings(
            **{k: settings[k] for k in known if k in settings}, batch_size=self.settings.batch_size
        )
        return self._estimate(model, transcoders, n_tokens, trace_settings).to_dict()

    def _model(self, name: str) -> LoadedModel:
        try:
            return self._models[name]
        except KeyError:
            raise UserError(f"this worker does not serve model {name!r}") from None

    def tokenize(self, model: str, prompt: str) -> list[Token]:
        tokenizer = self._model(model).tokenizer
        with self._tokenizer_lock:
            try:
                ids = engine_tokenize(tokenizer, prompt)
            except PromptError as exc:
                raise UserError(str(exc)) from exc
            return [Token(id=i, text=str(tokenizer.decode([i]))) for i in ids]

    def render_chat(self, model: str, messages: list[dict[str, str]]) -> str:
        tokenizer = self._model(model).tokenizer
        with self._tokenizer_lock:
            try:
                return render_chat(tokenizer, messages)
            except ChatError as exc:
                raise UserError(str(exc)) from exc

    @torch.no_grad()
    def predict(self, model: str, token_ids: list[int], top_k: int) -> list[Prediction]:
        lm = self._model(model)
        context = context_length(lm.model)
        if context is not None and len(token_ids) > context:
            # Past its position embeddings the model fails with an IndexError, not a message.
            raise UserError(f"the prompt has {len(token_ids)} tokens; the model accepts at most {context}")
        logits = lm.model(torch.tensor([token_ids], device=lm.device)).logits[0, -1].float()
        probs = torch.softmax(logits, dim=-1)
        top = probs.topk(min(top_k, probs.numel()))
        with self._tokenizer_lock:
            return [
                Prediction(id=int(i), text=str(lm.tokenizer.decode([int(i)])), probability=float(p))
                for p, i in zip(top.values, top.indices, strict=True)
            ]

    def _transcoders_of(self, name: str) -> TranscoderSet:
        try:
            return self._transcoders[name]
        except KeyError:
            raise UserError(f"this worker has no transcoder set {name!r}") from None

    def trace(self, job: TracePayload, progress: Progress) -> dict[str, Any]:
        lm, tc = self._model(job.model), self._transcoders_of(job.transcoders)
        target = job.target
        targets = (
            None
            if target is None
            else TargetSpec(
                tokens=tuple(target.tokens) if target.tokens else None,
                logit_diff=tuple(target.logit_diff) if target.logit_diff else None,  # type: ignore[arg-type]
            )
        )
        s = job.settings
        trace_settings = TraceSettings(
            max_n_logits=s.max_n_logits,
            desired_logit_prob=s.desired_logit_prob,
            max_feature_nodes=s.max_feature_nodes,
            max_edges_per_target=s.max_edges_per_target,
            batch_size=self.settings.batch_size,
        )
        if job.token_ids:
            planned = self._estimate(job.model, job.transcoders, len(job.token_ids), trace_settings)
            if planned.fits is False:  # refused with the setting to change, not an out-of-memory crash
                raise UserError(planned.refusal())
        try:
            # Token ids, not text: they are what the graph id was computed from.
            graph, pruned = trace_pruned(
                lm,
                tc,
                job.token_ids,
                targets=targets,
                settings=trace_settings,
                node_threshold=s.node_threshold,
                edge_threshold=s.edge_threshold,
                progress=progress,
            )
        except TraceRequestError as exc:
            raise UserError(str(exc)) from exc
        graph.prompt = job.prompt
        graph.feature_labels.update(self._dashboard_labels(job.transcoders, graph, pruned))
        if s.qk:
            graph.attention = qk_entries(lm, tc, graph, pruned, progress=progress)
            named = set().union(*(qk.contributors(e) for e in graph.attention))
            graph.feature_labels.update(self._labels(job.transcoders, named))
        # dumps writes float32 values in their shortest form; parsing that back keeps them short.
        document: dict[str, Any] = orjson.loads(interop.dumps(graph, prune_result=pruned, scan=job.model))
        return document

    def intervene(self, job: InterventionPayload, progress: Progress) -> dict[str, Any]:
        """On the graph's prompt, re-tokenized: the same ids the graph was traced from."""
        lm, tc = self._model(job.model), self._transcoders_of(job.transcoders)
        ivs = [
            FeatureIntervention(i.layer, i.position, i.feature, Mode(i.mode), float(i.value))
            for i in job.interventions
            if not isinstance(i, HeadAblationItem)
        ]
        heads = tuple(
            HeadAblation(i.layer, i.head) for i in job.interventions if isinstance(i, HeadAblationItem)
        )
        o = job.options
        options = InterventionOptions(
            ablate_heads=heads,
            freeze_attention=o.freeze_attention,
            direct_only=o.direct_only,
            apply_to_generated=o.apply_to_generated,
            top_k=o.top_k,
            n_generate=o.n_generate,
        )
        try:
            with self._tokenizer_lock:
                ids = engine_tokenize(lm.tokenizer, job.prompt)
            result = intervene_request(lm, tc, ids, ivs, options)
        except (PromptError, TraceRequestError) as exc:
            raise UserError(str(exc)) from exc
        document = result.to_dict()
        for change in document["probability_changes"]:
            change["token"] = str(lm.tokenizer.decode([change["token_id"]]))
        return document

    def attention(self, job: AttentionPayload, graph: dict[str, Any], progress: Progress) -> dict[str, Any]:
        lm, tc = self._model(job.model), self._transcoders_of(job.transcoders)
        cached = self._attention
        if cached is None or cached[0] != job.graph_id:
            self._attention = None  # free the previous recorded pass before making the next
            imported = interop.from_json(graph)
            tracer = AttentionTracer.for_graph(
                lm.model, tc, imported, bos_token_id=lm.tokenizer.bos_token_id, progress=progress
            )
            cached = self._attention = (job.graph_id, imported, tracer)
        _, imported, tracer = cached
        try:
            if job.edge is not None:
                progress("head_loadings", 0, 1)
                result = edge_heads(tracer, imported, job.edge.source, job.edge.target)
                named = {result["source"], result["target"]}
            else:
                head = job.head
                assert head is not None  # the request validator guarantees one of edge / head
                progress("qk", 0, 1)
                result = head_qk(tracer, head.layer, head.head, head.query_pos, head.key_pos, job.top)
                named = qk.contributors(result["qk_tracing_results"])
        except AttentionRequestError as exc:
            raise UserError(str(exc)) from exc
        labels = dict(imported.feature_labels)
        labels.update(self._labels(job.transcoders, named))
        result["labels"] = {
            node_id: labels[key]
            for node_id in named
            if (key := _feature_key(node_id)) is not None and key in labels
        }
        return result

    def _labels(self, transcoders: str, node_ids: set[str]) -> dict[str, str]:
        """Feature key -> dashboard label for the features among `node_ids`."""
        labels: dict[str, str] = {}
        n_layers = self._transcoders_of(transcoders).n_layers
        for node_id in node_ids:
            key = _feature_key(node_id)
            if key is None:
                continue
            layer, index = (int(v) for v in key.split("_"))
            if layer >= n_layers:  # a logit id has the same shape
                continue
            dashboard = self.feature(transcoders, layer, index)
            label = dashboard.get("label") if dashboard else None
            if isinstance(label, str) and label:
                labels[key] = label
        return labels

    def _dashboard_labels(self, transcoders: str, graph: Graph, pruned: PruneResult) -> dict[str, str]:
        """Automatic labels of the features the pruned graph keeps, so the page reads "say Austin"
        rather than "L3 #88" (shared labels people write still take precedence in the page)."""
        labels: dict[str, str] = {}
        for node in pruned.node_mask[: graph.n_features].nonzero(as_tuple=True)[0].tolist():
            layer, _, index = (int(v) for v in graph.features[node])
            dashboard = self.feature(transcoders, layer, index)
            label = dashboard.get("label") if dashboard else None
            if isinstance(label, str) and label:
                labels[f"{layer}_{index}"] = label
        return labels

    def feature(self, transcoders: str, layer: int, index: int) -> dict[str, Any] | None:
        lookup = self._dashboards.get(transcoders)
        if lookup is None:
            return None
        try:
            return lookup(layer, index)
        except KeyError:
            return None


def _feature_key(node_id: str) -> str | None:
    parsed = parse_feature_id(node_id)
    return None if parsed is None else f"{parsed[0]}_{parsed[1]}"
