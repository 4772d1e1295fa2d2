"""Feature dashboards for any transcoder set, computed on a text corpus.

    collect.py   streaming per-feature statistics in a fixed-size state (top examples, samples, histogram)
    logits.py    direct logit effects through the final norm and the unembedding
    labels.py    automatic labels (with optional hints: word groups, function words)
    details.py   feature-detail dicts (Neuronpedia's shape plus `label`) from the statistics
    corpus.py    reading a text or .jsonl corpus one document at a time
    build.py     the resumable driver, writing format/dashboards.py's layout
    cli.py       `attrgraph dashboards build`

May import engine/ and format/; never api/, worker/, protocol/ or demo/.
"""
