"""``edgecnn predict MODEL IMAGE...``: classify image files, each preprocessed the MNIST way."""
import click


@click.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True)
@click.option("--top", type=click.IntRange(1), default=1, show_default=True, help="Show the K most likely classes.")
@click.option("--invert", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="Invert to light-on-dark like MNIST: auto decides from the border (light paper -> yes).")
@click.option("--save-preprocessed", type=click.Path(file_okay=False), default=None,
              help="Also write each 28x28 input the model saw, as PNG, into this folder.")
def command(model_path, images, top, invert, save_preprocessed):
    """Classify each IMAGE (any format OpenCV reads) with MODEL.

    Each image is made MNIST-like (ink bounding box, longest side scaled to 20 px, padded to 28x28,
    centre of mass centred, inverted when it is dark ink on light paper), then the model's own
    normalization is applied. One line per image: path, digit, confidence.
    """
    import os

    import numpy as np

    from edgecnn import io as eio
    from edgecnn.digits import to_mnist_28

    decoded, bad = [], []
    for path in images:
        img, why = _read_gray(path)
        if img is None:
            bad.append(f"{path} ({why})")
        decoded.append(img)
    if bad:
        raise click.ClickException("cannot read " + "; ".join(bad))
    try:
        clf = eio.load(model_path)
    except eio.ModelFileError as e:
        raise click.ClickException(str(e)) from None
    inv = {"auto": None, "yes": True, "no": False}[invert]
    batch = np.stack([to_mnist_28(img, invert=inv) for img in decoded])
    probs = clf.predict(batch)
    names = clf.class_names
    if save_preprocessed:
        from edgecnn._fsutil import write_image
        try:
            os.makedirs(save_preprocessed, exist_ok=True)
            for path, x in zip(images, batch):
                write_image(os.path.join(save_preprocessed, os.path.splitext(os.path.basename(path))[0] + ".28.png"), x)
        except (ValueError, OSError) as e:
            raise click.ClickException(str(e)) from None
    for path, p, x in zip(images, probs, batch):
        order = np.argsort(-p, kind="stable")[:top]
        best = ", ".join(f"{names[i]} ({p[i]:.3f})" for i in order)
        note = "  [blank: no ink found]" if not x.any() else ""
        click.echo(f"{path}: {best}{note}")


def _read_gray(path):
    """(grayscale uint8 image, None) or (None, reason); decodes from bytes so OpenCV prints no warnings."""
    import cv2
    import numpy as np

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except OSError as e:
        return None, e.strerror or str(e)
    if not raw:
        return None, "empty file"
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        return None, "not an image OpenCV can decode"
    return img, None
