"""One text mutator for the fuzz tests (config files, WFDB headers): replace, delete or insert characters."""
from __future__ import annotations

import random


def mutate_text(text: str, rng: random.Random, alphabet: str, max_edits: int) -> str:
    """1..max_edits random edits: half replace a character, 30 % delete one, 20 % insert one."""
    chars = list(text)
    for _ in range(rng.randint(1, max_edits)):
        pos = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.5:
            chars[pos] = rng.choice(alphabet)
        elif op < 0.8:
            del chars[pos]
        else:
            chars.insert(pos, rng.choice(alphabet))
    return "".join(chars)
