"""Executor-level fusion of BatchNorm2D (ReLU or no activation) into the 2x2 MaxPool2D after it.

Why: conv-BN-ReLU-pool is the block the default model is made of, and run layer by layer its batch
norm and pooling move the full-size tensor ~11 times a step; edgecnn.kernels.bn_relu_pool does
the same work in ~6.5 passes. The layers stay as they are (summary, saving, parameters); a CPU plan
only runs the pair differently:

* the BatchNorm2D node's forward passes its input through untouched (its output is never
  materialized: the plan allocates no buffer for it, nor for its gradient);
* the MaxPool2D node's forward normalizes, applies the ReLU and pools in one pass, keeping
  BatchNorm2D's batch statistics in that layer's workspace as its own forward would;
* the MaxPool2D node's backward does nothing, and BatchNorm2D's backward goes from the pooled
  gradient straight to its input gradient and its parameter gradients.

A pair is fused only when the BatchNorm2D output feeds that pooling layer and nothing else (not
the model's output either), the input is (C, H, W), and the pooling is 2x2 with stride 2 and no
padding. CUDA plans run the layers as they are.
"""
from . import kernels as K
from . import layers as L

ENABLED = True  # False: plans run every layer on its own (tests compare the two)


def bn_pool_pairs(model):
    """[(k, j)]: node k (BatchNorm2D) is fused into node j (its MaxPool2D)."""
    nodes, shapes = model._nodes, model._shapes
    final = nodes[-1].out
    users = {}
    for j, node in enumerate(nodes):
        for t in node.ins:
            users.setdefault(t, []).append(j)
    pairs = []
    for k, node in enumerate(nodes):
        bn = node.layer
        if type(bn) is not L.BatchNorm2D or bn.activation not in (None, "relu"):
            continue
        if len(shapes[node.out]) != 3 or node.out == final or len(users.get(node.out, ())) != 1:
            continue
        j = users[node.out][0]
        pool = nodes[j].layer
        if (type(pool) is L.MaxPool2D and tuple(pool.pool_size) == (2, 2) and tuple(pool.strides) == (2, 2)
                and tuple(pool.padding) == (0, 0) and nodes[j].ins == [node.out]):
            pairs.append((k, j))
    return pairs


class BNPool:
    """The four replacement calls for one fused pair of a plan (same signatures as Layer.fwd/bwd)."""

    def __init__(self, plan, k, j):
        nodes = plan._model._nodes
        self.plan, self.k, self.j = plan, k, j
        self.bn, self.pool_out = nodes[k].layer, nodes[j].out
        self.relu = self.bn.activation == "relu"

    def bn_fwd(self, xs, y, ws, training):
        return xs[0]  # read only by the pooling node, which normalizes it

    def pool_fwd(self, xs, y, ws, training):
        g, b, rm, rv = (p.value for p in self.bn.params)
        ws_bn = self.plan.ws[self.k]
        ws_bn["training"] = bool(training)
        K.bn_relu_pool_forward(xs[0], g, b, rm, rv, training=bool(training), momentum=self.bn.momentum,
                               eps=self.bn.eps, relu=self.relu, out=y, argmax=ws["argmax"],
                               save_mean=ws_bn["save_mean"], save_invstd=ws_bn["save_invstd"])
        return y

    def pool_bwd(self, gy, xs, y, ws, gxs):
        pass  # BatchNorm2D's backward below goes from this node's gradient to its own input

    def bn_bwd(self, gy, xs, y, ws, gxs):
        if not ws["training"]:
            raise RuntimeError(f"{self.bn.describe()}: backward needs a forward with training=True")
        p = self.plan
        gx = gxs[0] if gxs[0] is not None else ws["gx"]
        K.bn_relu_pool_backward(p.g[self.pool_out], p.vals[self.pool_out], p.ws[self.j]["argmax"], xs[0],
                                self.bn.params[0].value, ws["save_mean"], ws["save_invstd"], relu=self.relu,
                                gx=gx, ggamma=self.bn.params[0].grad, gbeta=self.bn.params[1].grad)
