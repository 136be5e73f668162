#!/usr/bin/python3
"""Print N random SCALE-Sim run specs (RUN arguments of scalesim_runs.py), seeded.

usage: scalesim_random_runs.py SEED N
Shapes 1..150 per dimension, arrays 2..32 per side, SRAMs 1..8 kB, CALC or USER with
1..64 words per cycle: small enough that v2 finishes each in seconds, varied enough to
hit partial folds, spills, prefetch stalls and write-buffer stalls.
"""
import random
import sys

seed, n = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
for _ in range(n):
    m, nn, k = (rng.randint(1, 150) for _ in range(3))
    rows, cols = rng.choice([2, 3, 4, 8, 12, 16, 32]), rng.choice([2, 3, 4, 8, 12, 16, 32])
    df = rng.choice(["os", "ws", "is"])
    ikb, fkb, okb = (rng.choice([1, 2, 3, 8]) for _ in range(3))
    if rng.random() < 0.7:
        print(f"{m},{nn},{k},{rows},{cols},{df},{ikb},{fkb},{okb},USER,{rng.choice([1, 2, 3, 5, 8, 16, 64])}")
    else:
        print(f"{m},{nn},{k},{rows},{cols},{df},{ikb},{fkb},{okb},CALC")
