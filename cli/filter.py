"""`edgecnn filter IMAGE --filter NAME[:key=value,...] ... --out OUT.png [--show]`."""
import click


def _to_display(img):
    """uint8 as is; float results (e.g. gradient orientation, float chains) scaled to 0..255."""
    import numpy as np
    if img.dtype == np.uint8:
        return img
    a = np.abs(img.astype(np.float32))
    top = float(a.max()) if a.size else 0.0
    return (a * (255.0 / top) if top > 0 else a).round().clip(0, 255).astype(np.uint8)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--filter", "-f", "specs", multiple=True, metavar="NAME[:k=v,...]",
              help="Filter to apply, in order (repeatable), e.g. gray, gaussian:ksize=5,sigma=1.2, "
                   "sobel_x. Run with --list to see every name.")
@click.option("--border", default="reflect101", show_default=True,
              type=click.Choice(["reflect101", "constant", "replicate"]))
@click.option("--gray", is_flag=True, help="Read the image as grayscale.")
@click.option("--float", "as_float", is_flag=True,
              help="Filter in float32 (signed responses kept; written scaled to 0..255).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the result here (PNG, JPG, ...).")
@click.option("--show", is_flag=True, help="Show input and result in a window (any key closes it).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
              help="Where the filters run: cuda needs a GPU and the cuda extra; auto picks cuda when a GPU "
                   "is usable.")
@click.option("--list", "list_names", is_flag=True, help="List filter names and exit.")
def filter_cmd(image, specs, border, gray, as_float, out, show, device, list_names):
    """Apply classic filters (Sobel, Scharr, Laplacian, blur, sharpen, ...) to IMAGE."""
    from edgecnn import filters
    if list_names:
        click.echo("\n".join(filters.names()))
        return
    import cv2
    import numpy as np

    import os
    if not os.path.isfile(image):
        raise click.ClickException(f"cannot read image {image!r}: no such file")
    img = cv2.imread(image, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise click.ClickException(f"cannot read image {image!r} (missing, unreadable or not an image)")
    from edgecnn._fsutil import check_image_path, write_image
    if out:
        try:  # before filtering: a typo in --out should not cost the result
            check_image_path(out)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    if not specs:
        raise click.UsageError("give at least one --filter (names: " + ", ".join(filters.names()) + ")")
    if as_float:
        img = img.astype(np.float32)
    from edgecnn.device import CudaUnavailableError, get
    try:
        dev = get(device)
    except CudaUnavailableError as e:
        raise click.ClickException(" ".join(str(e).split())) from None
    try:
        chain = filters.FilterChain(list(specs), border=border)
        img = np.ascontiguousarray(img)
        result = dev.to_host(chain.apply(dev.from_host(img))) if dev.is_cuda else chain.apply(img)
    except (ValueError, TypeError) as e:
        raise click.ClickException(str(e))
    shown = _to_display(result)
    if out:
        try:
            write_image(out, shown)
        except (ValueError, OSError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"wrote {out} ({shown.shape[1]}x{shown.shape[0]}, {len(chain)} filter(s))")
    if show:
        _show(cv2, np, _to_display(img), shown, " | ".join(specs))
    elif not out:
        click.echo("nothing to do: give --out FILE and/or --show", err=True)


def _show(cv2, np, before, after, title):
    import os
    import sys
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        click.echo("--show: no display available (DISPLAY is not set); use --out FILE instead", err=True)
        return
    try:
        if before.ndim != after.ndim:
            before = cv2.cvtColor(before, cv2.COLOR_BGR2GRAY) if before.ndim == 3 else before
            after = after if after.ndim == 2 else cv2.cvtColor(after, cv2.COLOR_BGR2GRAY)
        cv2.imshow(title, np.hstack([before, after]))
        cv2.waitKey(0)
        cv2.destroyAllWindows()
    except cv2.error as e:
        click.echo(f"--show: cannot open a window ({str(e).strip().splitlines()[-1]}); "
                   "use --out FILE instead", err=True)
