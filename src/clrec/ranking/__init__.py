"""The second, ranking stage: a cross-encoder re-scores the retriever's top candidates.

* :mod:`clrec.ranking.texts` — the texts it reads: one per item, one context per user.
* :mod:`clrec.ranking.pairs` — the labelled (user, item) pairs it trains and is tested on,
  built from a split and a fitted retriever without leaking test interactions.
"""
