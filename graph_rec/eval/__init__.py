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
from graph_rec.eval.stats import PairedComparison, compare_results, paired_bootstrap

__all__ = [
    "ACCURACY_METRICS",
    "EvalConfig",
    "EvalResult",
    "PairedComparison",
    "auc",
    "compare_results",
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
    "paired_bootstrap",
    "precision_at_k",
    "recall_at_k",
    "sample_negatives",
]
