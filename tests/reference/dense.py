"""float64 dense-layer references from the definition y[n, o] = sum_i x[n, i] w[o, i] + b[o]."""
import numpy as np


def dense_ref(x, w, b=None):
    y = np.einsum("ni,oi->no", np.asarray(x, np.float64), np.asarray(w, np.float64))
    return y if b is None else y + np.asarray(b, np.float64)


def dense_bwd_ref(gy, x, w):
    """(gx, gw, gb) of sum(y * gy)."""
    gy, x, w = (np.asarray(a, np.float64) for a in (gy, x, w))
    return np.einsum("no,oi->ni", gy, w), np.einsum("no,ni->oi", gy, x), gy.sum(axis=0)
