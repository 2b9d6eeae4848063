"""Launch configuration shared by every CUDA kernel: block sizes live here, and tests shrink them.

* BLOCK: threads per block of 1-D launches (elementwise ops, pooling, one-thread-per-row kernels).
* TILE: the side of the square thread block of the tiled GEMM-style kernels (dense, conv). Each block
  stages two TILE x TILE float32 tiles in shared memory; the shared arrays are declared at the
  compile-time maximum MAX_TILE (x MAX_TILE + 1 against bank conflicts) and a launch uses TILE of it,
  so shrinking TILE in tests needs no recompilation.
* REDUCE: threads per block of the block reductions (bias gradients, batch-norm statistics, loss sums);
  a power of two <= MAX_REDUCE. The reduction order depends only on REDUCE and the array size, never
  on timing, so results are deterministic.
* SPLIT_BLOCKS / SPLIT_MIN: split-K of the conv weight gradient (see ``split_k``).

``configure(block=..., tile=..., reduce=...)`` sets them; ``shrunk()`` is a context manager for tests
(tiny blocks, so tiny shapes still run the multi-block and multi-tile paths).
"""
import contextlib

MAX_TILE = 16       # compile-time size of the shared GEMM tiles: 2 * 16 * 17 * 4 B = 2.2 KB per block
MAX_REDUCE = 256    # compile-time size of the shared reduction buffer: 1 KB per block

BLOCK = 256
TILE = 16
REDUCE = 256
SPLIT_BLOCKS = 240   # split-K aims for this many blocks (a few waves on a 30-80 SM GPU)
SPLIT_MIN = 64       # ...but gives each slice at least this many reduced elements (4 TILE steps)


def configure(block=None, tile=None, reduce=None):
    """Set block sizes (None keeps the current value); returns the previous (block, tile, reduce)."""
    global BLOCK, TILE, REDUCE
    prev = (BLOCK, TILE, REDUCE)
    if block is not None:
        if not 1 <= int(block) <= 1024:
            raise ValueError(f"configure: block must be in [1, 1024], got {block}")
        BLOCK = int(block)
    if tile is not None:
        if not 1 <= int(tile) <= MAX_TILE:
            raise ValueError(f"configure: tile must be in [1, {MAX_TILE}], got {tile}")
        TILE = int(tile)
    if reduce is not None:
        r = int(reduce)
        if r < 1 or r > MAX_REDUCE or r & (r - 1):
            raise ValueError(f"configure: reduce must be a power of two in [1, {MAX_REDUCE}], got {reduce}")
        REDUCE = r
    return prev


@contextlib.contextmanager
def shrunk(block=32, tile=4, reduce=8, split_blocks=8, split_min=8):
    global SPLIT_BLOCKS, SPLIT_MIN
    prev = configure(block, tile, reduce)
    prev_split = (SPLIT_BLOCKS, SPLIT_MIN)
    SPLIT_BLOCKS, SPLIT_MIN = split_blocks, split_min
    try:
        yield
    finally:
        configure(*prev)
        SPLIT_BLOCKS, SPLIT_MIN = prev_split


def grid1d(n):
    """(blocks, threads) covering n elements with one thread each."""
    return (max(1, -(-int(n) // BLOCK)), BLOCK)


def grid_tiles(rows, cols, depth=1):
    """(grid, block) for a TILE x TILE GEMM: x over columns, y over rows, z over groups."""
    t = TILE
    return ((max(1, -(-int(cols) // t)), max(1, -(-int(rows) // t)), int(depth)), (t, t))


def split_k(blocks, reduced):
    """(slices, chunk): how many slices to cut a reduced axis of ``reduced`` elements into, given
    ``blocks`` blocks per slice, and the slice length (a multiple of TILE). One slice when the grid
    is already large or the axis short."""
    want = max(1, -(-SPLIT_BLOCKS // max(1, int(blocks))))
    most = max(1, int(reduced) // max(SPLIT_MIN, TILE))
    slices = min(want, most)
    chunk = -(-int(reduced) // slices)
    chunk = -(-chunk // TILE) * TILE
    slices = -(-int(reduced) // chunk)
    return slices, chunk


def grid_reduce(count):
    """(blocks, threads) with one block of REDUCE threads per reduced output."""
    return (int(count), REDUCE)
