"""Ruled and grid lines of notebook paper, cut out of the ink runs before digits are labelled.

Why: a printed line darker than the ink threshold joins every digit it touches into one component as
wide as the page, which the size and aspect filters then refuse. Measured on the live test video
with 1-2 px lines 30 % darker than the paper: 0 of 540 digits found (98.7 % on plain paper).

How a line is told from a digit stroke:
* it is thin across its direction: at most ``width`` px of ink in a column for a horizontal line, in
  a row for a vertical one, to be found; to be cut, at most the lines' measured thickness + 1;
* it is long: it runs off the frame and spans ``min_len`` px or more, or it spans FREE_LINE of the
  frame (paper smaller than the view). A digit cannot run off the frame (cut digits are refused
  anyway), and a thin-pen "1" 168 px tall in a 228 px photo spans 0.66 of it;
* its path may drift one pixel every BLOCK px (paper tilted up to ~18 degrees) and bend, but not
  kink; it goes through digits that cross it and skips short gaps (sensor noise).
Where a digit's stroke crosses a line, the ink there is thick across the line's direction, so it
stays with the digit. Where two grid lines cross, the square between their arms goes too, and so do
the specks a blurred, tilted line leaves beside the cut.

Limits: a thin stroke lying along a line (the base of a "2" written on it, a stroke along a grid
line) goes with the line; a thin straight stroke spanning FREE_LINE of the frame (a "1" filling the
picture) is taken for one.
"""
import numpy as np

from ._jit import njit

BLOCK = 3  # path cells: a line may move one pixel sideways per BLOCK pixels along it (with 4, none
           # of 360 digits was found on paper turned 15 degrees)
GAP = 4    # empty cells a line may skip between thin ones (noise, fading)
HORIZONTAL, VERTICAL, CROSSING = np.uint8(1), np.uint8(2), np.uint8(4)
THICK, THIN = np.uint8(1), np.uint8(2)  # path cells: ink a line may pass through, ink it may be
PASSAGE = 3  # px: ink a path may cross is at least this wide the other way
EDGE = 2  # cells (or px across): a path ending this close to the frame's border runs off it
SHORT_LINE = 3  # cells: a path running off the frame at both ends is a line from this long (a grid
# line cutting a corner: 17 px of one were read as a 1 with 10)
FREE_LINE = 0.75  # of the frame's side: a line that does not run off the frame is at least this long
ANCHOR = 8  # cells: a path's next cell is predicted from the line through its last one and one 8-16
# cells back


@njit
def _one_way(cells, ci, cj, order, length, off, a1i, a1j, a2i, a2j):
    """One pass of _longest_paths over the ink cells (ci, cj) in ``order`` (+1: paths come from lower i,
    -1: from higher): length[i, j] = the longest straight path ending at the cell (in cells along),
    off[i, j] = whether that path's far end lies on the frame's border. A path continues from a cell
    1..GAP + 1 back (moving at most that many cells across) when the new cell lies within 1.5 rows
    of the line through that cell and an anchor 1-2 ANCHOR lengths back on its path: a path may
    bend, but not kink."""
    n, m = cells.shape
    k = ci.shape[0]
    for t in range(k):
        u = t if order > 0 else k - 1 - t
        i, j = ci[u], cj[u]
        side = j < EDGE or j >= m - EDGE  # a tilted line leaves the frame across its direction
        best, o = 1, side or (i < EDGE if order > 0 else i >= n - EDGE)
        b1i, b1j, b2i, b2j = i, j, i, j  # a new path's anchors: the cell itself
        for d in range(1, GAP + 2):  # the nearest cells first: a gap is looked across only when
            p = i - order * d        # nothing is nearer (a lookup per step, not 35, on a solid line);
            if p < 0 or p >= n or best > 1 or (d > 1 and cells[i, j] == THICK):  # no jumps into
                break                                                              # THICK ink
            for jj in range(max(j - d, 0), min(j + d + 1, m)):
                v = length[p, jj]
                if v <= 0 or v + d <= best:
                    continue
                ai, aj = a1i[p, jj], a1j[p, jj]
                # straight on: |j - (jj + (jj - aj) (i - p) / (p - ai))| <= 1.5, in integers
                if ai != p and 2 * abs((j - jj) * (p - ai) - (jj - aj) * (i - p)) > 3 * abs(p - ai):
                    continue
                best, o = v + d, side or off[p, jj]
                b1i, b1j, b2i, b2j = ai, aj, a2i[p, jj], a2j[p, jj]
        if abs(i - b2i) >= ANCHOR:  # move the anchors up the path
            b1i, b1j, b2i, b2j = b2i, b2j, i, j
        length[i, j], off[i, j] = best, o
        a1i[i, j], a1j[i, j], a2i[i, j], a2j[i, j] = b1i, b1j, b2i, b2j


@njit
def _longest_paths(cells, need, need_free):
    """cells (n, m) uint8 (n cells along the line's direction, m across): THIN ink, THICK ink or 0.
    Returns (n, m) bool: a THIN cell on a straight path (see _one_way) that goes through THICK cells
    (a digit the line crosses) and skips at most GAP empty cells between THIN ones, and that spans
    >= ``need`` cells and reaches the first or last EDGE cells or its sides' (runs off the frame), or
    spans >= SHORT_LINE cells and runs off it at both ends (a tilted line crossing a corner), or
    spans >= ``need_free`` cells. Straight: a path that kinks (a stroke leaving a line more steeply
    than the line's own course allows) does not carry the line's length on; one that leaves it at a
    shallow angle, bending gradually, still does."""
    n, m = cells.shape
    fwd = np.zeros((n, m), np.int32)
    bwd = np.zeros((n, m), np.int32)
    fwd_off = np.zeros((n, m), np.bool_)  # the path's start (its end, for bwd) lies on the border
    bwd_off = np.zeros((n, m), np.bool_)
    a1i, a1j = np.empty((n, m), np.int32), np.empty((n, m), np.int32)  # each pass writes a cell's
    a2i, a2j = np.empty((n, m), np.int32), np.empty((n, m), np.int32)  # before any cell reads it
    ci, cj = np.nonzero(cells)  # in (i, j) order; a loop over every cell cost 0.3 ms a pass
    _one_way(cells, ci, cj, 1, fwd, fwd_off, a1i, a1j, a2i, a2j)
    _one_way(cells, ci, cj, -1, bwd, bwd_off, a1i, a1j, a2i, a2j)
    on = np.zeros((n, m), np.bool_)
    for t in range(ci.shape[0]):
        i, j = ci[t], cj[t]
        if cells[i, j] == THIN:
            span = fwd[i, j] + bwd[i, j] - 1
            on[i, j] = (span >= need_free or (span >= need and (fwd_off[i, j] or bwd_off[i, j]))
                        or (span >= SHORT_LINE and fwd_off[i, j] and bwd_off[i, j]))
    return on


@njit
def _median(hist):
    """The median of the values counted in hist (0 when it is empty)."""
    total = hist.sum()
    seen = 0
    for v in range(hist.shape[0]):
        seen += hist[v]
        if 2 * seen >= total and total > 0:
            return v
    return 0


@njit
def _cells(px):
    return (int(px) + BLOCK - 1) // BLOCK


@njit
def line_pixels_cpu(starts, ends, counts, h, w, min_len_h, min_len_v, width, out):
    """out (h, w) uint8: HORIZONTAL, VERTICAL or CROSSING for the ink pixels of lines, else 0. min_len_h
    and min_len_v: px that a line running off the frame spans at least (see the module's notes); width:
    the thickest line looked for, px (the cut then follows the lines' measured thickness). The ink
    is the runs (run k of row y is [starts[y, k], ends[y, k])). Per-pixel work is branch-free row
    arithmetic or limited to the ink: 0.4 ms a ruled 640x480 page, 0.7 ms a squared one."""
    mask = np.zeros((h, w), np.uint8)
    for y in range(h):
        for k in range(counts[y]):
            mask[y, starts[y, k]:ends[y, k]] = 1
    # ink above and below each pixel in its column (saturating at 255), row by row: vectorized
    up = np.zeros((h, w), np.uint8)
    down = np.zeros((h, w), np.uint8)
    cap = np.uint8(254)
    for x in range(w):
        up[0, x] = mask[0, x]
        down[h - 1, x] = mask[h - 1, x]
    for y in range(1, h):
        for x in range(w):
            up[y, x] = (min(up[y - 1, x], cap) + np.uint8(1)) * mask[y, x]
    for y in range(h - 2, -1, -1):
        for x in range(w):
            down[y, x] = (min(down[y + 1, x], cap) + np.uint8(1)) * mask[y, x]
    # path cells: horizontal lines in cells of BLOCK columns ([x cell, y]), vertical ones in cells of
    # BLOCK rows ([y cell, x]); THIN where the ink is at most ``width`` across the line's direction
    nb, nbv = (w + BLOCK - 1) // BLOCK, (h + BLOCK - 1) // BLOCK
    cells = np.zeros((nb, h), np.uint8)
    cells_v = np.zeros((nbv, w), np.uint8)
    for y in range(h):
        for k in range(counts[y]):
            a, b = starts[y, k], ends[y, k]
            thin_row = b - a <= width
            for x in range(a, b):
                thin_col = np.int32(up[y, x]) + np.int32(down[y, x]) - 1 <= width
                # THICK (passage) only where the ink also runs PASSAGE px or more the other way (a
                # digit, a crossing): the 1-2 px lines of the other direction, left out, cost the path
                # search nothing (a grid page: 1.24 -> 0.66 ms)
                if thin_col:
                    cells[x // BLOCK, y] = THIN
                elif b - a >= PASSAGE:
                    cells[x // BLOCK, y] = max(cells[x // BLOCK, y], THICK)
                if thin_row:
                    cells_v[y // BLOCK, x] = THIN
                elif np.int32(up[y, x]) + np.int32(down[y, x]) - 1 >= PASSAGE:
                    cells_v[y // BLOCK, x] = max(cells_v[y // BLOCK, x], THICK)
    on_h = _longest_paths(cells, (min_len_h + BLOCK - 1) // BLOCK, _cells(FREE_LINE * w))
    on_v = _longest_paths(cells_v, (min_len_v + BLOCK - 1) // BLOCK, _cells(FREE_LINE * h))
    # The lines' own thickness: the median ink across the found paths (mostly line between digits),
    # plus 1 px of slack. Only ink that thin is cut: a 5 px digit stroke touching a 1 px line stays,
    # while a tilted, blurred 2-3 px line (4-5 px of ink per column) still goes.
    hist_h = np.zeros(width + 1, np.int64)
    hist_v = np.zeros(width + 1, np.int64)
    for y in range(h):
        for k in range(counts[y]):
            a, b = starts[y, k], ends[y, k]
            for x in range(a, b):
                col = np.int32(up[y, x]) + np.int32(down[y, x]) - 1
                if col <= width and on_h[x // BLOCK, y]:
                    hist_h[col] += 1
                if b - a <= width and on_v[y // BLOCK, x]:
                    hist_v[b - a] += 1
    t_h = min(_median(hist_h) + 1, width)
    t_v = min(_median(hist_v) + 1, width)
    out[:, :] = 0
    any_h = False
    any_v = False
    for y in range(h):
        for k in range(counts[y]):
            a, b = starts[y, k], ends[y, k]
            thin_row = b - a <= t_v
            for x in range(a, b):
                v = np.uint8(0)
                if on_h[x // BLOCK, y] and np.int32(up[y, x]) + np.int32(down[y, x]) - 1 <= t_h:
                    v |= HORIZONTAL
                    any_h = True
                if thin_row and on_v[y // BLOCK, x]:
                    v |= VERTICAL
                    any_v = True
                out[y, x] = v
    if any_h and any_v:
        # where grid lines cross, the ink is thick both ways: take it when line arms reach it from all
        # four sides (a stroke crossing one line has ink of its own above and below, or left and right)
        for y in range(h):
            for k in range(counts[y]):
                for x in range(starts[y, k], ends[y, k]):
                    if out[y, x] == 0 and _arms(out, y, x, max(t_h, t_v) + 1):
                        out[y, x] = CROSSING
    return out


@njit
def _arms(lines, y, x, reach):
    h, w = lines.shape
    found = 0
    for dx in range(1, reach + 1):
        if x - dx >= 0 and lines[y, x - dx] & HORIZONTAL:
            found |= 1
        if x + dx < w and lines[y, x + dx] & HORIZONTAL:
            found |= 2
        if y - dx >= 0 and lines[y - dx, x] & VERTICAL:
            found |= 4
        if y + dx < h and lines[y + dx, x] & VERTICAL:
            found |= 8
    return found == 15


@njit
def split_runs_cpu(starts, ends, counts, lines, ink_starts, ink_ends, ink_counts, line_starts, line_ends,
                   line_counts):
    """Cut each run into its stretches off and on the lines: the ink runs (labelled as digits' strokes)
    and the line runs (kept so the crops can blank them). Output arrays are shaped like the input."""
    h = counts.shape[0]
    cap = ink_starts.shape[1]
    for y in range(h):
        ni = 0
        nl = 0
        for k in range(counts[y]):
            x, b = starts[y, k], ends[y, k]
            while x < b:
                on = lines[y, x] != 0
                x0 = x
                while x < b and (lines[y, x] != 0) == on:
                    x += 1
                if on and nl < cap:
                    line_starts[y, nl] = x0
                    line_ends[y, nl] = x
                    nl += 1
                elif not on and ni < cap:
                    ink_starts[y, ni] = x0
                    ink_ends[y, ni] = x
                    ni += 1
        ink_counts[y] = ni
        line_counts[y] = nl


@njit
def drop_line_debris(rrow, rx0, rx1, comp, stats, lines, size):
    """Zero the area of what a line's cut leaves beside it: components no bigger than size x size
    that touch a line, and components lying along one (half their pixels or more next to a line
    pixel), such as the blurred fringe of a tilted line. Kept, they chained up with the merge's
    fragment rule (a piece near a bigger one joins it) into page-wide groups (a grid tilted 8
    degrees: 61 % of the digits found), or a fringe 15 px long was read as a 1. A stroke crossing a
    line touches it at the crossing only. Zero-area components are never digits and are blanked in
    the crops."""
    h, w = lines.shape
    near = np.zeros(stats.shape[0], np.int64)  # pixels next to a line pixel, per component
    for i in range(rrow.shape[0]):
        c = comp[i]
        y = rrow[i]
        y0, y1 = max(y - 1, 0), min(y + 2, h)
        for x in range(rx0[i], rx1[i]):
            hit = False
            for yy in range(y0, y1):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if lines[yy, xx]:
                        hit = True
            if hit:
                near[c] += 1
    for c in range(stats.shape[0]):
        small = stats[c, 2] - stats[c, 0] <= size and stats[c, 3] - stats[c, 1] <= size
        if (small and near[c] > 0) or 2 * near[c] >= stats[c, 4] > 0:
            stats[c, 4] = 0


@njit
def with_line_runs(rrow, rx0, rx1, comp, stats, line_starts, line_ends, line_counts):
    """The labelled ink runs plus the line runs as one extra component of zero area: never a digit
    (the merge and size filters skip it), and blanked in every crop like any other component."""
    h = line_counts.shape[0]
    n_line = 0
    for y in range(h):
        n_line += line_counts[y]
    n = rrow.shape[0]
    ncomp = stats.shape[0]
    rrow2 = np.empty(n + n_line, np.int32)
    rx02 = np.empty(n + n_line, np.int32)
    rx12 = np.empty(n + n_line, np.int32)
    comp2 = np.empty(n + n_line, np.int32)
    rrow2[:n] = rrow
    rx02[:n] = rx0
    rx12[:n] = rx1
    comp2[:n] = comp
    i = n
    for y in range(h):
        for k in range(line_counts[y]):
            rrow2[i] = y
            rx02[i] = line_starts[y, k]
            rx12[i] = line_ends[y, k]
            comp2[i] = ncomp
            i += 1
    stats2 = np.zeros((ncomp + 1, 5), np.int32)
    stats2[:ncomp] = stats
    return rrow2, rx02, rx12, comp2, stats2


@njit
def has_long_component(stats, min_len_h, min_len_v):
    """Whether any component spans min_len_h px across or min_len_v px down (a line may be in it)."""
    for i in range(stats.shape[0]):
        if stats[i, 2] - stats[i, 0] >= min_len_h or stats[i, 3] - stats[i, 1] >= min_len_v:
            return True
    return False
