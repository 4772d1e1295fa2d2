"""Every Redis key the service uses, and how long each one lives. Nothing else builds key names.

All keys share one prefix (settings.key_prefix), so several deployments or test runs can share a
server, and `redis-cli --scan --pattern 'attrgraph:*'` shows everything that is ours.

    queue:{model}          stream     jobs waiting for / held by a worker (consumer group "workers")
    job:{job}              hash       a job's request, state, progress and result
    job:{job}:events       stream     the job's progress events, replayed to each SSE client
    inflight:{result}      string     the job computing a result (graph or intervention): identical
                                      requests join it
    alias:{request}        string     request key (model, prompt text, ...) -> graph id, skips tokenizing
    graph:{graph}          string     the graph JSON, gzip-compressed (served as is)
    graph:{graph}:meta     string     JSON summary (prompt, model, sizes) for lists
    graph:{graph}:nodes    hash       node id -> the node with its incoming and outgoing edges
    graph:{graph}:refs     set        who refers to the graph (share links, annotations): pinned
    graph:{graph}:features set        the features:{set}:{feat} keys naming the graph (eviction
                                      removes it from each, so the index shrinks with the cache)
    graphs:recent          zset       graph id by creation time
    graphs:lru             zset       unpinned graphs by last access: eviction order
    graphs:sizes           hash       graph id -> bytes it holds, for the memory bound
    graphs:bytes           string     total bytes of unpinned graphs
    models                 hash       model name -> what a worker advertised (revision, transcoders)
    workers                zset       worker id by last heartbeat
    worker:{id}            string     a live worker's description (expires unless heartbeated)
    calls:{model}          list       worker calls: tokenize, predictions, dashboards (worker_calls.py)
    calls:reply:{id}       list       the one reply to a worker call
    feature:{set}:{l}:{i}  string     a feature dashboard, cached from a worker
    rate:{client}:{window} string     requests a client made in one rate-limit window
    ann:{kind}:{scope}:{key}          hash    a label or note: value, version, author, time (no TTL)
    ann:{kind}:{scope}:{key}:history  list    every version of it, oldest first (no TTL)
    labels:{set}           hash       feature key (layer_index) -> its current label, for search
    notes:{graph}          hash       note target -> the current note
    features:{set}:{feat}  set        graphs that use a feature (filled lazily, see annotations.py)
    features:indexed       set        graphs already entered in the feature index
    view:{id}              string     a share link's saved view (no TTL; pins its graph)
    events:graph:{graph}   channel    pub/sub: note changes on a graph
    events:labels:{set}    channel    pub/sub: label changes in a transcoder set
    intervention:{id}      string     an intervention's result JSON (content-addressed, expires)
    attention:{id}         string     an attention explanation's JSON (content-addressed, expires)

Graphs themselves have no TTL: unpinned ones are bounded by bytes (store.py evicts least recently
used), pinned ones are kept until their last reference goes.
"""

from __future__ import annotations

from dataclasses import dataclass

CONSUMER_GROUP = "workers"

# --- lifetimes, in seconds ---------------------------------------------------------------------------
JOB_TTL_S = 7 * 24 * 3600  # a job record that never finishes (lost) still goes away
FINISHED_JOB_TTL_S = 24 * 3600  # clients may still poll or replay events for a day
EVENTS_MAX = 500  # events kept per job (progress is throttled, so far more than one job makes)
INFLIGHT_TTL_S = 24 * 3600  # safety net only: the worker deletes it when the job ends
ALIAS_TTL_S = 30 * 24 * 3600
WORKER_CALL_QUEUE_TTL_S = 120  # calls nobody took are dropped (each also carries its own deadline)
WORKER_CALL_REPLY_TTL_S = 60
FEATURE_TTL_S = 24 * 3600
RATE_WINDOW_S = 60
INTERVENTION_TTL_S = 7 * 24 * 3600  # results are cheap to recompute; share links re-run them
ATTENTION_TTL_S = 7 * 24 * 3600  # as interventions: recomputed on demand after that
RECENT_MAX = 1000  # graphs listed by "recent"; older ones stay fetchable by id


def worker_ttl_s(heartbeat_s: float) -> int:
    """A worker is alive while its key exists: three missed heartbeats and it is gone."""
    return max(2, int(heartbeat_s * 3 + 1))


@dataclass(frozen=True)
class Keys:
    prefix: str = "attrgraph:"

    def queue(self, model: str) -> str:
        return f"{self.prefix}queue:{model}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def job_events(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def inflight(self, result_id: str) -> str:
        return f"{self.prefix}inflight:{result_id}"

    def alias(self, request_key: str) -> str:
        return f"{self.prefix}alias:{request_key}"

    @property
    def graph_prefix(self) -> str:
        """For Lua scripts that derive graph keys from ids they read inside Redis."""
        return f"{self.prefix}graph:"

    def graph(self, graph_id: str) -> str:
        return f"{self.graph_prefix}{graph_id}"

    def graph_meta(self, graph_id: str) -> str:
        return f"{self.graph_prefix}{graph_id}:meta"

    def graph_nodes(self, graph_id: str) -> str:
        return f"{self.graph_prefix}{graph_id}:nodes"

    def graph_refs(self, graph_id: str) -> str:
        return f"{self.graph_prefix}{graph_id}:refs"

    def graph_features(self, graph_id: str) -> str:
        return f"{self.graph_prefix}{graph_id}:features"

    def graph_keys(self, graph_id: str) -> list[str]:
        """Everything one graph's bytes live in (deleted together on eviction). The eviction script
        in store.py builds the same names from `graph_prefix` inside Redis: keep them in step."""
        return [
            self.graph(graph_id),
            self.graph_meta(graph_id),
            self.graph_nodes(graph_id),
            self.graph_features(graph_id),
        ]

    @property
    def graphs_recent(self) -> str:
        return f"{self.prefix}graphs:recent"

    @property
    def graphs_lru(self) -> str:
        return f"{self.prefix}graphs:lru"

    @property
    def graphs_sizes(self) -> str:
        return f"{self.prefix}graphs:sizes"

    @property
    def graphs_bytes(self) -> str:
        return f"{self.prefix}graphs:bytes"

    @property
    def models(self) -> str:
        return f"{self.prefix}models"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def worker_calls(self, model: str) -> str:
        return f"{self.prefix}calls:{model}"

    def worker_call_reply(self, call_id: str) -> str:
        return f"{self.prefix}calls:reply:{call_id}"

    def feature(self, transcoder_set: str, layer: int, index: int) -> str:
        return f"{self.prefix}feature:{transcoder_set}:{layer}:{index}"

    def rate(self, client: str, window: int) -> str:
        return f"{self.prefix}rate:{client}:{window}"

    # --- collaboration (protocol/annotations.py): none of these expire -------------------------------
    def annotation(self, kind: str, scope: str, key: str) -> str:
        return f"{self.prefix}ann:{kind}:{scope}:{key}"

    def annotation_history(self, kind: str, scope: str, key: str) -> str:
        return f"{self.prefix}ann:{kind}:{scope}:{key}:history"

    def labels(self, transcoder_set: str) -> str:
        return f"{self.prefix}labels:{transcoder_set}"

    def notes(self, graph_id: str) -> str:
        return f"{self.prefix}notes:{graph_id}"

    def feature_graphs(self, transcoder_set: str, feature: str) -> str:
        return f"{self.prefix}features:{transcoder_set}:{feature}"

    @property
    def features_indexed(self) -> str:
        return f"{self.prefix}features:indexed"

    def view(self, view_id: str) -> str:
        return f"{self.prefix}view:{view_id}"

    def graph_channel(self, graph_id: str) -> str:
        return f"{self.prefix}events:graph:{graph_id}"

    def labels_channel(self, transcoder_set: str) -> str:
        return f"{self.prefix}events:labels:{transcoder_set}"

    def intervention(self, intervention_id: str) -> str:
        return f"{self.prefix}intervention:{intervention_id}"

    def attention(self, attention_id: str) -> str:
        return f"{self.prefix}attention:{attention_id}"
