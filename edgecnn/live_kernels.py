"""Numba kernels of the live digit pipeline: background-normalized ink, binarization, run-length labeling.

The frame is scanned twice: once for a coarse paper-brightness grid (tile means that ignore ink), once
to turn each pixel into an "ink" value relative to its local paper and to cut every
row into runs of ink. Connected components are then found by linking runs of neighbouring rows with
union-find, so the sequential part costs O(runs), not O(pixels), and no label image is written.
"""
import numpy as np
from ._jit import njit

F0 = np.float32(0)
F1 = np.float32(1)
F255 = np.float32(255)


@njit
def paper_tiles_cpu(gray, tile, out):
    """out[ty, tx] = brightness of the paper in each tile x tile block (mean of pixels at or above the mean).

    Ink only darkens, so the pixels at or above a tile's mean are paper; their mean is a robust estimate
    even when strokes cover part of the tile. Every fourth row is enough for a smooth estimate and costs
    a quarter of a full pass (whole rows, so the inner loops vectorize).
    """
    h, w = gray.shape
    th, tw = out.shape
    for ty in range(th):
        y0 = ty * tile
        y1 = min(y0 + tile, h)
        for tx in range(tw):
            x0 = tx * tile
            x1 = min(x0 + tile, w)
            s = np.int32(0)
            n = np.int32(0)
            for y in range(y0, y1, 4):
                for x in range(x0, x1):
                    s += np.int32(gray[y, x])
                n += x1 - x0
            m = s // max(n, 1)
            s2 = np.int32(0)
            n2 = np.int32(0)
            for y in range(y0, y1, 4):
                for x in range(x0, x1):
                    v = np.int32(gray[y, x])
                    keep = np.int32(v >= m)
                    s2 += v * keep
                    n2 += keep
            out[ty, tx] = np.float32(s2) / np.float32(max(n2, 1))


@njit
def max3x3_cpu(a, out):
    """3x3 max filter on the small tile grid: a tile full of thick stroke borrows its neighbours' paper."""
    th, tw = a.shape
    for y in range(th):
        for x in range(tw):
            m = a[y, x]
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= th:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if 0 <= xx < tw and a[yy, xx] > m:
                        m = a[yy, xx]
            out[y, x] = m


@njit
def paper_row_cpu(paper, tile, y, w, out):
    """out[x] = paper brightness at (y, x): bilinear between tile centres, clamped at the edges, written
    segment by segment between tile centres so the inner loops are plain vector code (no gathers)."""
    th, tw = paper.shape
    half = np.float32(tile) * np.float32(0.5) - np.float32(0.5)  # pixel coordinate of tile 0's centre
    inv = F1 / np.float32(tile)
    fy = (np.float32(y) - half) * inv
    fy = min(max(fy, F0), np.float32(th - 1))
    y0 = min(int(fy), th - 1)
    y1 = min(y0 + 1, th - 1)
    ay = fy - np.float32(y0)
    c0 = int(np.ceil(half))
    left = paper[y0, 0] + ay * (paper[y1, 0] - paper[y0, 0])
    for x in range(min(c0, w)):
        out[x] = left
    for j in range(tw - 1):
        pa = paper[y0, j] + ay * (paper[y1, j] - paper[y0, j])
        pb = paper[y0, j + 1] + ay * (paper[y1, j + 1] - paper[y0, j + 1])
        slope = (pb - pa) * inv
        xs = min(c0 + j * tile, w)
        xe = min(c0 + (j + 1) * tile, w)
        base = np.float32(j) * np.float32(tile) + half
        for x in range(xs, xe):
            out[x] = pa + (np.float32(x) - base) * slope
    right = paper[y0, tw - 1] + ay * (paper[y1, tw - 1] - paper[y0, tw - 1])
    for x in range(min(c0 + (tw - 1) * tile, w), w):
        out[x] = right


@njit
def ink_runs_cpu(gray, paper, tile, thr, starts, ends, counts):
    """Runs of ink per row: pixels whose darkness relative to the local paper, 255 * (paper - gray) /
    paper, exceeds ``thr``, that is gray < paper * (1 - thr / 255): one uint8 threshold per pixel of the
    row, no division per pixel. Run k of row y is [starts[y, k], ends[y, k]). Rows without ink cost one
    vectorized uint8 compare-and-count."""
    h, w = gray.shape
    cap = starts.shape[1]
    prow = np.empty(w, np.float32)
    trow = np.empty(w, np.uint8)
    keep = F1 - np.float32(thr) / F255
    for y in range(h):
        paper_row_cpu(paper, tile, y, w, prow)
        for x in range(w):  # gray < t (float)  <=>  gray < ceil(t) (integers)
            t = min(max(np.ceil(prow[x] * keep), F0), F255)
            trow[x] = np.uint8(t)
        g = gray[y]
        cnt = np.int32(0)
        for x in range(w):
            cnt += np.int32(g[x] < trow[x])
        n = 0
        x = 0
        while cnt > 0 and x < w:
            if g[x] < trow[x]:
                x0 = x
                while x < w and g[x] < trow[x]:
                    x += 1
                if n < cap:
                    starts[y, n] = x0
                    ends[y, n] = x
                    n += 1
                cnt -= x - x0
            else:
                x += 1
        counts[y] = n


@njit
def ink_cpu(gray, paper, tile, y0, y1, x0, x1, out):
    """out = clip(255 * (paper - gray) / paper) over rows y0:y1, columns x0:x1 (out is (y1-y0, x1-x0))."""
    w = gray.shape[1]
    prow = np.empty(w, np.float32)
    for y in range(y0, y1):
        paper_row_cpu(paper, tile, y, w, prow)
        for x in range(x0, x1):
            v = F255 - np.float32(gray[y, x]) * F255 / max(prow[x], F1) + np.float32(0.5)
            out[y - y0, x - x0] = np.uint8(min(max(v, F0), F255))


@njit
def otsu_cpu(img):
    """Otsu's threshold of a uint8 image (the level that maximizes between-class variance)."""
    hist = np.zeros(256, np.int64)
    for v in img.ravel():
        hist[v] += 1
    total = img.size
    sum_all = 0.0
    for i in range(256):
        sum_all += i * hist[i]
    w0 = 0
    sum0 = 0.0
    best = 0.0
    thr = 0
    for t in range(256):
        w0 += hist[t]
        if w0 == 0:
            continue
        w1 = total - w0
        if w1 == 0:
            break
        sum0 += t * hist[t]
        m0 = sum0 / w0
        m1 = (sum_all - sum0) / w1
        between = w0 * w1 * (m0 - m1) * (m0 - m1)
        if between > best:
            best = between
            thr = t
    return thr


@njit
def row_runs_cpu(ink, thr, starts, ends, counts):
    """Cut each row into runs of pixels with ink > thr: run k of row y is [starts[y, k], ends[y, k])."""
    h, w = ink.shape
    cap = starts.shape[1]
    for y in range(h):
        n = 0
        x = 0
        while x < w:
            if ink[y, x] > thr:
                x0 = x
                while x < w and ink[y, x] > thr:
                    x += 1
                if n < cap:
                    starts[y, n] = x0
                    ends[y, n] = x
                    n += 1
            else:
                x += 1
        counts[y] = n


@njit
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit
def label_runs_cpu(starts, ends, counts):
    """Connected components (8-connected) of the runs; returns per-run rows, spans, component ids and
    per-component stats (x0, y0, x1, y1 exclusive, area)."""
    h = counts.shape[0]
    offs = np.zeros(h + 1, np.int64)
    for y in range(h):
        offs[y + 1] = offs[y] + counts[y]
    n = offs[h]
    rrow = np.empty(n, np.int32)
    rx0 = np.empty(n, np.int32)
    rx1 = np.empty(n, np.int32)
    parent = np.arange(n).astype(np.int64)
    for y in range(h):
        for k in range(counts[y]):
            i = offs[y] + k
            rrow[i] = y
            rx0[i] = starts[y, k]
            rx1[i] = ends[y, k]
        if y == 0:
            continue
        # two-pointer sweep over this row's and the previous row's runs (both sorted by x)
        a = offs[y - 1]
        a_end = offs[y]
        for k in range(counts[y]):
            i = offs[y] + k
            lo = starts[y, k] - 1  # 8-connectivity: diagonal neighbours touch
            hi = ends[y, k] + 1
            j = a
            while j < a_end and rx1[j] < lo + 1:
                j += 1
            a = j
            while j < a_end and rx0[j] < hi:
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    if ri < rj:
                        parent[rj] = ri
                    else:
                        parent[ri] = rj
                j += 1
    comp_of_root = np.full(n, -1, np.int64)
    ncomp = 0
    comp = np.empty(n, np.int32)
    for i in range(n):
        r = _find(parent, i)
        if comp_of_root[r] < 0:
            comp_of_root[r] = ncomp
            ncomp += 1
        comp[i] = comp_of_root[r]
    stats = np.zeros((ncomp, 5), np.int32)
    for c in range(ncomp):
        stats[c, 0] = 1 << 30
        stats[c, 1] = 1 << 30
    for i in range(n):
        c = comp[i]
        stats[c, 0] = min(stats[c, 0], rx0[i])
        stats[c, 1] = min(stats[c, 1], rrow[i])
        stats[c, 2] = max(stats[c, 2], rx1[i])
        stats[c, 3] = max(stats[c, 3], rrow[i] + 1)
        stats[c, 4] += rx1[i] - rx0[i]
    return rrow, rx0, rx1, comp, stats


@njit
def paint_crop_cpu(gray, paper, tile, rrow, rx0, rx1, comp, cand_of_comp, cand, x0, y0, x1, y1, low, out):
    """Ink inside the box into out (y1-y0, x1-x0), keeping the soft edges of candidate ``cand``'s strokes
    but blanking pixels of other components' runs (a neighbour's stroke reaching into the box) and faint
    noise at or below ``low``. Returns the largest ink value of the candidate's own runs."""
    ink_cpu(gray, paper, tile, y0, y1, x0, x1, out)
    for y in range(y1 - y0):
        for x in range(x1 - x0):
            if out[y, x] <= low:
                out[y, x] = 0
    peak = 0
    for i in range(rrow.shape[0]):
        y = rrow[i]
        if y < y0 or y >= y1 or rx1[i] <= x0 or rx0[i] >= x1:
            continue
        a = max(rx0[i], x0)
        b = min(rx1[i], x1)
        if cand_of_comp[comp[i]] == cand:
            for x in range(a, b):
                if out[y - y0, x - x0] > peak:
                    peak = out[y - y0, x - x0]
        else:
            for x in range(a, b):
                out[y - y0, x - x0] = 0
    return peak


@njit
def stretch_cpu(crop, peak):
    """Scale so that ``peak`` (the candidate's darkest stroke) maps to 255, as MNIST's saturated cores."""
    if peak <= 0:
        return
    g = np.float32(255) / (np.float32(peak) * np.float32(0.8))
    h, w = crop.shape
    for y in range(h):
        for x in range(w):
            v = np.float32(crop[y, x]) * g + np.float32(0.5)
            crop[y, x] = np.uint8(min(v, F255))


@njit
def select_candidates_cpu(stats, group, box, alive, h, w, min_size, max_h, min_aspect, max_aspect,
                          min_fill, max_fill, reject_border, max_out):
    """Size, aspect, fill and border filters over merged groups. Returns boxes (M, 4) as x0, y0, x1, y1
    and cand_of_comp (n,): the candidate each component belongs to, or -1."""
    n = stats.shape[0]
    area = np.zeros(n, np.int64)
    for i in range(n):
        if group[i] >= 0:
            area[group[i]] += stats[i, 4]
    slot = np.full(n, -1, np.int64)
    boxes = np.empty((max_out, 4), np.int32)
    m = 0
    for g in range(n):
        if not alive[g] or m >= max_out:
            continue
        x0, y0, x1, y1 = box[g, 0], box[g, 1], box[g, 2], box[g, 3]
        bw = x1 - x0
        bh = y1 - y0
        if bh < min_size or bh > max_h:
            continue
        aspect = bh / bw
        if aspect < min_aspect or aspect > max_aspect:
            continue
        fill = area[g] / (bw * bh)
        # a straight "1" fills its thin box almost entirely; anything stubbier and that solid is a blob
        if fill < min_fill or (fill > max_fill and aspect < 3.0):
            continue
        if reject_border and (x0 == 0 or y0 == 0 or x1 == w or y1 == h):
            continue
        boxes[m, 0] = x0
        boxes[m, 1] = y0
        boxes[m, 2] = x1
        boxes[m, 3] = y1
        slot[g] = m
        m += 1
    cand_of_comp = np.full(n, -1, np.int32)
    for i in range(n):
        if group[i] >= 0:
            cand_of_comp[i] = slot[group[i]]
    return boxes[:m].copy(), cand_of_comp
