"""The embedded demo model: a small GPT-2 trained on a generated toy world, with its transcoders.

`attrgraph demo build` rebuilds everything under `attrgraph/data/demo/` from scratch:

    corpus.py              the world (US geography, antonyms in three languages, names) and the corpus
    tokenizer.py           a word-level tokenizer (GPT-2 byte-level pre-tokenisation, BOS added)
    train_model.py         the language model (transformers GPT2LMHeadModel)
    train_transcoders.py   per-layer transcoders on the model's MLPs
    dashboards.py          feature dashboards (Neuronpedia feature-detail format) and automatic labels
    evaluate.py            behaviour and transcoder-quality metrics reported in docs/demo-model.md
    dallas.py              the Dallas analysis of the model card; state_features.py the state-picking
                           features it searches; edits.py feature edits through engine.interventions
    build.py               the pipeline; cli.py the `attrgraph demo` subcommand
"""
