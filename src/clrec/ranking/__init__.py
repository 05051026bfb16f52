"""The second, ranking stage: learning to rank the union of several retrievers' candidates.

* :mod:`clrec.ranking.candidates` — the retrievers (the run's model, ItemKNN, popular, recent)
  and the union of their top lists, for a whole fold or one request.
* :mod:`clrec.ranking.features` — the documented feature list and the one function that
  computes it, in batch and in the service.
* :mod:`clrec.ranking.ltr` — LightGBM LambdaRank, boosted from the model's score.
* :mod:`clrec.ranking.folds` / :mod:`clrec.ranking.evaluate` / :mod:`clrec.ranking.pipeline`
  — the training and test folds without leakage, the evaluation, ``clrec rank train``.
* :mod:`clrec.ranking.click` — the optional click model (a cross-encoder over
  :mod:`clrec.ranking.texts` and :mod:`clrec.ranking.pairs`), one more feature.
* :mod:`clrec.ranking.stage` — the serving form inside an artifact.
"""
