"""float64 dropout references: the mask from its definition (splitmix64 of the element index) and the
inverted-scaling forward / backward given a mask."""
import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z):
    z = np.asarray(z, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_mask_ref(shape, rate, seed):
    """Element i (flat, C order) kept when the top 24 bits of mix(mix(seed + golden) + i * golden)
    are >= round(rate * 2**24)."""
    with np.errstate(over="ignore"):
        key = _mix(np.uint64((seed + _GOLDEN) % 2**64))
        i = np.arange(int(np.prod(shape)), dtype=np.uint64)
        r = _mix(key + i * np.uint64(_GOLDEN)) >> np.uint64(40)
    return (r >= round(rate * 2**24)).astype(np.uint8).reshape(shape)


def dropout_ref(x, mask, rate):
    return np.asarray(x, np.float64) * mask / (1.0 - rate)


def dropout_bwd_ref(gy, mask, rate):
    return np.asarray(gy, np.float64) * mask / (1.0 - rate)
