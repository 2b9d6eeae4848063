"""``edgecnn live``: classify handwritten digits from a camera, video file, image folder or stream URL."""
import json
import sys

import click

KEYS_HELP = "Keys: q or Esc quit, f cycles the filter view, space pauses, s saves a snapshot."


@click.command("live", context_settings={"show_default": True}, epilog=KEYS_HELP)
@click.argument("source", required=False, default="0")
@click.option("--model", "model", default=None, metavar="FILE",
              help="Model file [default: edgecnn-model.ecnn, what `edgecnn train` saves].")
@click.option("--headless/--window", "headless", default=None,
              help="No window [default: automatic; headless when there is no display or OpenCV has no GUI].")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Write one JSON object per frame (JSON lines).")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="Save the annotated video (mp4).")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after N frames.")
@click.option("--filter", "filters", multiple=True, metavar="SPEC",
              help="Filter run on the gray frame before binarization (edgecnn.filters names, repeatable; "
                   "e.g. gaussian or gaussian:ksize=5).")
@click.option("--view", default=None, metavar="FILTER",
              help="Show a side-by-side filter view (gradient_magnitude, sobel_x, ..., ink); f cycles.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.5,
              help="Reject digits classified below this probability.")
@click.option("--binarize", type=click.Choice(["adaptive", "otsu"]), default="adaptive",
              help="Ink threshold: fixed darkness relative to the local paper, or Otsu's level (floored).")
@click.option("--threshold", type=click.IntRange(1, 254), default=64,
              help="Ink level, 255 * darkness relative to the local paper (64: 25% darker).")
@click.option("--normalizer", type=click.Choice(["fused", "digits"]), default="fused",
              help="MNIST-style normalization of each digit: one Numba call for all candidates, or "
                   "edgecnn.digits.to_mnist_28 per crop (what `edgecnn predict` uses; slower).")
@click.option("--min-size", type=click.IntRange(4), default=12, help="Smallest digit height, pixels.")
@click.option("--cut-lines/--keep-lines", "cut_lines", default=True,
              help="Cut ruled and grid paper lines out of the ink before finding digits (--keep-lines when "
                   "a thin straight stroke fills most of the picture and is taken for a line).")
@click.option("--reconnects", type=click.IntRange(0), default=5,
              help="Reconnect attempts (exponential backoff) when a camera or stream stops delivering.")
@click.option("--snapshot-dir", type=click.Path(file_okay=False), default=".",
              help="Where s saves snapshots.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
              help="Where the model runs: cuda needs a GPU and the cuda extra; auto picks cuda when a GPU "
                   "is usable.")
@click.option("--summary-json", type=click.Path(dir_okay=False), default=None,
              help="Also write the end-of-run summary as JSON.")
def live(source, model, headless, output, record, max_frames, filters, view, min_confidence, binarize,
         threshold, normalizer, min_size, cut_lines, reconnects, snapshot_dir, device, summary_json):
    """Classify handwritten digits in SOURCE: a camera index [default 0], a video file, an image folder or
    a stream URL. Prints a summary (frames, FPS, latency percentiles) at the end."""
    from edgecnn import live as L
    from edgecnn.live_sources import SourceError

    detect = {"normalizer": normalizer}
    if not cut_lines:
        detect["line_length"] = 0.0  # DetectConfig: 0 keeps the paper lines
    opts = L.LiveOptions(source=source, model=model, headless=headless, output=output, record=record,
                         max_frames=max_frames, filters=tuple(filters), view=view,
                         min_confidence=min_confidence,
                         binarize=binarize, threshold=threshold, min_size=min_size, reconnects=reconnects,
                         snapshot_dir=snapshot_dir, device=device, detect=detect)
    from edgecnn.device import CudaUnavailableError
    from edgecnn.io import ModelFileError
    try:
        summary = L.run(opts, log=lambda m: click.echo(m, err=True))
    except CudaUnavailableError as e:
        raise click.ClickException(" ".join(str(e).replace("live: ", "").split())) from None
    except (SourceError, FileNotFoundError) as e:
        raise click.ClickException(str(e).replace("live: ", "")) from None
    except ModelFileError as e:
        raise click.ClickException(f"cannot load model: {e}") from None
    except ValueError as e:
        raise click.UsageError(str(e).replace("live: ", "")) from None
    except KeyboardInterrupt:  # before the frame loop (it ends on Ctrl-C with a summary itself)
        click.echo("live: interrupted before the first frame; the source was released", err=True)
        sys.exit(130)
    click.echo(L.format_summary(summary), err=True)
    if summary_json:
        with open(summary_json, "w") as f:
            json.dump(summary, f, indent=1)
    if not summary["ok"]:
        sys.exit(1)
