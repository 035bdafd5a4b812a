"""Read-only harness of the `example` task: fixed data and the validation loss.

The task: fit y = f(x) with a small polynomial trained by gradient descent. train.py chooses
the hyperparameters and the training loop; this file owns the data and the number that counts.
Everything is deterministic, so a change of knobs changes the metric and nothing else does.
"""

import math
import random

N_TRAIN = 256
N_VAL = 256
DEGREE_MAX = 8


def target(x: float) -> float:
    return math.sin(2.5 * x) + 0.3 * x * x


def make_data(seed: int, n: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    xs = [rng.uniform(-1.5, 1.5) for _ in range(n)]
    return [(x, target(x) + rng.gauss(0.0, 0.05)) for x in xs]


TRAIN = make_data(1234, N_TRAIN)
VAL = make_data(5678, N_VAL)


def features(x: float, degree: int) -> list[float]:
    return [x ** k for k in range(degree + 1)]


def val_loss(weights: list[float]) -> float:
    """Mean squared error of the polynomial with these weights on the validation set."""
    degree = len(weights) - 1
    if degree > DEGREE_MAX:
        raise ValueError(f"degree {degree} exceeds DEGREE_MAX {DEGREE_MAX}")
    total = 0.0
    for x, y in VAL:
        pred = sum(w * f for w, f in zip(weights, features(x, degree)))
        total += (pred - y) ** 2
    return total / len(VAL)
