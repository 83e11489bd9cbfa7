"""One-shot architecture search with weight sharing (TuNAS-style).

- `supernet`: one Keras 3 network holding every decision of a search space; a path is a set
  of mask and selector tensors, so sampling a new architecture never retraces.
- `runner`: the traced train, score, BN-recalibration and inference steps, and weight checkpoints.
- `search`: the alternating loop (shared-weight steps, controller steps), its finalists scored
  stand-alone on the proxy, and `run_oneshot(search_dir, config)`.

Its figure (oneshot.png) is drawn by `mnas_search.analysis.oneshot_plot`.
"""
