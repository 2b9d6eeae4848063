"""File-system helpers shared by every atomic write (model files, checkpoints, downloads)."""
import os


def fsync_dir(path):
    """Make a rename into ``path`` durable where the platform allows it (POSIX); harmless elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
