"""The editable file of the `example` task: fit a polynomial with gradient descent.

The knobs are module-level constants; the weights go to $AUTORESEARCH_OUT for evaluate.py.
"""

from prepare import TRAIN, features, val_loss

DEGREE = 3  # search: int(1, 8)
LEARNING_RATE = 0.05  # search: log(0.001, 0.5)
STEPS = 200  # search: int(50, 2000)
MOMENTUM = 0.0  # search: float(0.0, 0.95)
WEIGHT_DECAY = 0.0  # search: log(1e-6, 0.1)


def train() -> list[float]:
    weights = [0.0] * (DEGREE + 1)
    velocity = [0.0] * (DEGREE + 1)
    for _ in range(STEPS):
        grads = [0.0] * (DEGREE + 1)
        for x, y in TRAIN:
            phi = features(x, DEGREE)
            err = sum(w * f for w, f in zip(weights, phi)) - y
            for k in range(DEGREE + 1):
                grads[k] += 2.0 * err * phi[k] / len(TRAIN)
        for k in range(DEGREE + 1):
            velocity[k] = MOMENTUM * velocity[k] - LEARNING_RATE * (grads[k] + WEIGHT_DECAY * weights[k])
            weights[k] += velocity[k]
    return weights


if __name__ == "__main__":
    import json
    import os

    # The read-only evaluate.py scores these weights: that number counts, not what we print.
    weights = train()
    with open(os.path.join(os.environ.get("AUTORESEARCH_OUT", "."), "weights.json"), "w") as fh:
        json.dump(weights, fh)
    print(f"val_loss: {val_loss(weights):.6f}")
