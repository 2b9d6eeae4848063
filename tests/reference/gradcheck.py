"""Central finite differences in float64 for checking reference backward passes."""
import numpy as np


def numeric_grad(f, x, gy, eps=1e-6):
    """d(sum(f(x) * gy))/dx by central differences; ``f`` maps a float64 array to a float64 array."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = np.sum(f(x) * gy)
        flat[i] = orig - eps
        minus = np.sum(f(x) * gy)
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return g


def max_rel_error(a, b, floor=1e-3):
    """max |a-b| / max(|a|, |b|, floor): relative where values are large, absolute-ish near zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    return float(np.max(np.abs(a - b) / denom)) if a.size else 0.0
