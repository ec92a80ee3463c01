"""Evaluation: ranking metrics as pure functions, and the full-ranking protocol."""

from graph_rec.eval.evaluator import EvalConfig, EvalResult, evaluate, sample_negatives
from graph_rec.eval.metrics import (
    ACCURACY_METRICS,
    auc,
    coverage,
    coverage_from_counts,
    f1_at_threshold,
    hit_at_k,
    intra_list_diversity,
    item_exposure,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
)

__all__ = [
    "ACCURACY_METRICS",
    "EvalConfig",
    "EvalResult",
    "auc",
    "coverage",
    "coverage_from_counts",
    "evaluate",
    "f1_at_threshold",
    "hit_at_k",
    "intra_list_diversity",
    "item_exposure",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
    "sample_negatives",
]
