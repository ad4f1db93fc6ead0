"""Structured pruning that physically shrinks both towers: heads, FFN neurons, whole layers.

    importance/    unit scores (registry): magnitude, taylor, mope
    plan.py        turn scores and a target into a SlicePlan (compact.models.surgery does the cutting)
    prune.py       one-shot pruning (+ optional recovery by distillation from the unpruned model)
"""
