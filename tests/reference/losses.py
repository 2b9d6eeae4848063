"""float64 loss references from the definitions, with analytic gradients."""
import numpy as np


def _f64(a):
    return np.asarray(a, np.float64)


def softmax_cross_entropy_ref(logits, labels):
    """-mean_n log softmax(logits_n)[label_n], log softmax as x - max - log(sum exp(x - max))."""
    x = _f64(logits)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(x)), np.asarray(labels)].mean()


def softmax_cross_entropy_grad_ref(logits, labels):
    """(softmax - onehot) / N."""
    x = _f64(logits)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(x)), np.asarray(labels)] -= 1.0
    return p / len(x)


def bce_with_logits_ref(logits, targets):
    """-mean(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), log sigmoid(x) = -log(1 + exp(-x))."""
    x, t = _f64(logits), _f64(targets)
    log_p, log_1mp = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)
    return -np.mean(t * log_p + (1 - t) * log_1mp)


def bce_with_logits_grad_ref(logits, targets):
    x, t = _f64(logits), _f64(targets)
    return (np.exp(-np.logaddexp(0.0, -x)) - t) / x.size


def mse_loss_ref(pred, target):
    return np.mean((_f64(pred) - _f64(target)) ** 2)


def mse_loss_grad_ref(pred, target):
    d = _f64(pred) - _f64(target)
    return 2.0 * d / d.size
