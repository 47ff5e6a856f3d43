"""Next-file prediction: learn how a workspace is navigated and prefetch what comes next.

``Predictor`` blends named signals (``signals.py``: task recency, Markov habits, co-change,
imports, tests, folders, query retrieval) with weights learned online; ``PredictStore`` keeps
it in the index database; ``Prefetcher`` builds the predicted files' context in the background.
"""

from indexer.predict.model import PRIOR_WEIGHTS, SIGNALS, Prediction, Predictor
from indexer.predict.prefetch import Prefetcher
from indexer.predict.signals import GraphView, StaticGraph
from indexer.predict.store import PREDICT_SCHEMA, PredictStore, SqliteGraphView

__all__ = ["GraphView", "PREDICT_SCHEMA", "PRIOR_WEIGHTS", "Prediction", "Predictor", "PredictStore",
           "Prefetcher", "SIGNALS", "SqliteGraphView", "StaticGraph"]
