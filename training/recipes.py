"""Named training recipes for `ecg-train all --recipe NAME`: the members trained (in order) and then combined.

Each member is a set of `ecg-train train` options (the same names as the command-line flags), so any member
can also be re-trained alone: `ecg-train train --run training/runs/x --crop 250 ...`. The attempts behind
these choices (all selected on val = PTB-XL strat_fold 9) are in training/ATTEMPTS.md.
"""
from __future__ import annotations

RECIPES: dict[str, list[dict]] = {
    # Model 2: members trained on random 2.5 s crops, run on the whole 10 s window (GAP = mean of crop logits);
    # the best scored epoch or the SWA of the second half, whichever scores higher on val; one thread each.
    "model2": [
        # r1_crop: 45 epochs run (early stop, patience 25), kept epoch 18 (its SWA scored lower on val)
        dict(widths="32,48,64,96", crop=250, epochs=60, swa_start=30, eval_every=3, threads=1, seed=1),
        # r2b_se_wide: kept epoch 20
        dict(widths="48,64,96,128", se=True, crop=250, epochs=40, swa_start=20, eval_every=4, threads=1, seed=1),
        # r3_se_k9: kept epoch 20
        dict(widths="32,48,64,96", se=True, kernel=9, crop=250, epochs=48, swa_start=24, eval_every=4, threads=1, seed=2),
    ],
    # The same path in miniature, for the tests: two small members (one with squeeze-excitation), 1 epoch each.
    "tiny2": [
        dict(widths="8,8,12,16", crop=250, epochs=1, swa_start=0, eval_every=1, threads=1, seed=1, batch_size=16),
        dict(widths="8,12,12,16", se=True, crop=250, epochs=1, swa_start=0, eval_every=1, threads=1, seed=2, batch_size=16),
    ],
}
