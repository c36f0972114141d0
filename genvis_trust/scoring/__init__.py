"""Scoring: the batched inference engine and its scale-out adapters."""

from .engine import ScoreRecord, ScoringEngine, naive_scores

__all__ = ["ScoreRecord", "ScoringEngine", "naive_scores"]
