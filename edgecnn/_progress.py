"""A per-epoch progress line on stderr: one updating line on a terminal, a few plain lines otherwise."""
import sys
import time


def format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``update(done_batches, images, loss_sum, correct)`` after each batch; ``close()`` at the end.

    On a TTY the line is redrawn at most every ``interval`` seconds; otherwise a plain line is written
    at each quarter of the epoch so logs stay short.
    """

    def __init__(self, label, total_batches, stream=None, interval=0.1, tty=None, width=24):
        self.label = label
        self.total = max(1, int(total_batches))
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty) if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.width = width
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.next_mark = 1
        self.start_batch = 0
        self.start_images = 0
        self.text = ""

    def resume_from(self, batches, images):
        """Count throughput and ETA only from batches run in this process (after a resume)."""
        self.start_batch, self.start_images = batches, images

    def render(self, done, images, loss, acc):
        elapsed = time.perf_counter() - self.start
        rate = (images - self.start_images) / elapsed if elapsed > 0 else 0.0
        per_batch = elapsed / max(1, done - self.start_batch)
        eta = per_batch * (self.total - done)
        filled = int(self.width * done / self.total)
        bar = "=" * filled + (">" if filled < self.width else "") + "." * max(0, self.width - filled - 1)
        return (f"{self.label} [{bar}] {done}/{self.total} ETA {format_duration(eta)} "
                f"{rate:,.0f} img/s loss {loss:.4f} acc {acc:.4f}")

    def update(self, done, images, loss, acc):
        now = time.perf_counter()
        if self.tty:
            if now - self.last_draw >= self.interval or done >= self.total:
                self.last_draw = now
                self.text = self.render(done, images, loss, acc)
                self.stream.write("\r" + self.text + "\x1b[K")
                self.stream.flush()
        elif done * 4 >= self.next_mark * self.total and done < self.total:
            while done * 4 >= self.next_mark * self.total:
                self.next_mark += 1
            self.stream.write(self.render(done, images, loss, acc) + "\n")
            self.stream.flush()

    def close(self):
        """End the updating line (the caller prints the epoch summary next)."""
        if self.tty and self.text:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        return time.perf_counter() - self.start
