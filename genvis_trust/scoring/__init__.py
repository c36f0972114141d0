"""Scoring: the batched inference engine and its scale-out adapters."""

from .baseline import naive_scores
from .engine import ScoreRecord, ScoringEngine

__all__ = ["ScoreRecord", "ScoringEngine", "naive_scores"]
