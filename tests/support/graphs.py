"""Small random attribution graphs for the engine tests (pruning, interop).

The graphs respect the structure a real trace has: features at (layer, position), edges only from
lower layers at the same or earlier positions, errors and tokens only as sources, logits at the last
position reading from everything.
"""

from __future__ import annotations

import torch

from attrgraph.engine.graph import Graph, LogitTarget


def random_graph(
    seed: int = 0,
    n_layers: int = 3,
    n_pos: int = 4,
    features_per_site: int = 2,
    n_logits: int = 3,
    edge_prob: float = 0.6,
    complete_rows: bool = True,
    d_transcoder: int = 50,
) -> Graph:
    gen = torch.Generator().manual_seed(seed)
    feature_rows: list[tuple[int, int, int]] = []
    for layer in range(n_layers):
        for pos in range(n_pos):
            count = int(torch.randint(0, features_per_site + 1, (1,), generator=gen))
            picks = torch.randperm(d_transcoder, generator=gen)[:count].tolist()
            feature_rows += [(layer, pos, int(f)) for f in picks]
    order = torch.randperm(len(feature_rows), generator=gen).tolist()
    feature_rows = [feature_rows[i] for i in order]
    n_features = len(feature_rows)
    features = torch.tensor(feature_rows, dtype=torch.long).reshape(-1, 3)
    activations = torch.rand(n_features, generator=gen) * 5 + 0.1

    error_offset = n_features
    token_offset = n_features + n_layers * n_pos
    logit_offset = token_offset + n_pos
    n_nodes = logit_offset + n_logits

    def sources_for(layer: int, pos: int) -> list[int]:
        found = [i for i, (fl, fp, _) in enumerate(feature_rows) if fl < layer and fp <= pos]
        found += [
            error_offset + el * n_pos + ep for el in range(min(layer, n_layers)) for ep in range(pos + 1)
        ]
        found += [token_offset + tp for tp in range(pos + 1)]
        return found

    edges: list[tuple[int, int]] = []
    for target, (layer, pos, _) in enumerate(feature_rows):
        edges += [
            (target, s) for s in sources_for(layer, pos) if float(torch.rand(1, generator=gen)) < edge_prob
        ]
    for i in range(n_logits):
        candidates = sources_for(n_layers, n_pos - 1)
        edges += [
            (logit_offset + i, s) for s in candidates if float(torch.rand(1, generator=gen)) < edge_prob
        ]
    edge_tensor = torch.tensor(edges, dtype=torch.long).reshape(-1, 2)
    weights = torch.randn(edge_tensor.shape[0], generator=gen) * torch.rand(
        edge_tensor.shape[0], generator=gen
    )

    abs_sums = torch.zeros(n_nodes).index_add_(0, edge_tensor[:, 0], weights.abs())
    if complete_rows:
        row_abs_totals = abs_sums.clone()
    else:
        row_abs_totals = abs_sums * (1 + torch.rand(n_nodes, generator=gen))
    is_target = torch.zeros(n_nodes, dtype=torch.bool)
    is_target[:n_features] = True
    is_target[logit_offset:] = True
    bias = torch.where(is_target, torch.randn(n_nodes, generator=gen), torch.zeros(n_nodes))
    target_values = torch.zeros(n_nodes).index_add_(0, edge_tensor[:, 0], weights) + bias

    probs = torch.rand(n_logits, generator=gen) + 0.05
    probs = torch.sort(probs / probs.sum() * 0.9, descending=True).values
    token_ids = [int(t) for t in torch.randint(5, 1000, (n_pos,), generator=gen)]
    logit_ids = torch.randperm(1000, generator=gen)[:n_logits].tolist()
    targets = [
        LogitTarget(token_id=int(v), token=f" tok{v}", probability=float(p))
        for v, p in zip(logit_ids, probs, strict=True)
    ]
    labels = {
        f"{layer}_{f}": f"feature {layer}/{f}" for layer, _, f in feature_rows[: max(1, n_features // 2)]
    }
    return Graph(
        prompt=" ".join(f"w{t}" for t in token_ids),
        token_ids=token_ids,
        tokens=[f" w{t}" if i else "<bos>" for i, t in enumerate(token_ids)],
        n_layers=n_layers,
        model_id="test/tiny-model",
        transcoder_id="test/tiny-transcoders",
        features=features,
        activations=activations.to(torch.float32),
        logit_targets=targets,
        edges=edge_tensor,
        weights=weights.to(torch.float32),
        target_values=target_values.to(torch.float32),
        bias_terms=bias.to(torch.float32),
        unexplored=torch.zeros(n_nodes),
        row_abs_totals=row_abs_totals.to(torch.float32),
        settings={
            "max_n_logits": 10,
            "desired_logit_prob": 0.95,
            "batch_size": 32,
            "max_feature_nodes": 1000,
        },
        stats={"elapsed_s": 0.5},
        feature_labels=labels,
    )
