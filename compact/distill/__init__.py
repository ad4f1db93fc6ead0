"""Distillation: a small multilingual student (image + text towers) from an English or multilingual teacher.

    recipe.py      typed recipe (YAML), shipped recipes in recipes/
    tokenizers/    student tokenizers: trimmed teacher vocabulary, trained BPE, bytes (registry)
    student.py     student config + TinyCLIP-style weight inheritance from the teacher
    losses/        feature, affinity, contrastive, DCLIP, soft negatives, Matryoshka (registry)
    data.py        images + aligned captions, parallel text (reference, TSV, captions + translations)
    cache.py       teacher-embedding cache (sharded, resumable, hashed)
    trainer.py     stages text -> vision -> align, checkpoints, resume, DDP
"""
