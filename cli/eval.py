"""``edgecnn eval MODEL``: accuracy, per-class precision/recall, confusion matrix, worst mistakes."""
import os

import click


@click.command("eval", context_settings={"show_default": True})
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the MNIST IDX files [default: $EDGECNN_DATA_DIR, else the user cache].")
@click.option("--mistakes", type=click.Path(dir_okay=False), default=None,
              help="PNG grid of the most confident mistakes [default: MODEL without extension + .mistakes.png].")
@click.option("--count", type=click.IntRange(0), default=36, help="Mistakes to show in the grid (0: no grid).")
@click.option("--batch-size", type=click.IntRange(1), default=500, help="Inference batch size.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Kernel threads [default: all cores].")
def command(model_path, data_dir, mistakes, count, batch_size, threads):
    """Evaluate MODEL on the 10,000 MNIST test images."""
    import time

    import numpy as np

    from edgecnn import io as eio
    from edgecnn._jit import set_num_threads
    from edgecnn.train import confusion_matrix, format_confusion

    if threads:
        set_num_threads(threads)
    try:
        clf = eio.load(model_path)
    except eio.ModelFileError as e:
        raise click.ClickException(str(e)) from None
    data = _load_test(data_dir)
    t0 = time.perf_counter()
    probs = clf.predict(data.test_images, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    labels = data.test_labels.astype(np.int64)
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    cm = confusion_matrix(labels, pred, k)
    names = clf.class_names
    acc = float((pred == labels).mean())
    wrong = int((pred != labels).sum())
    click.echo(f"{model_path}: accuracy {acc:.2%} ({wrong} of {len(labels)} wrong; "
               f"{len(labels) / seconds:,.0f} img/s incl. first-call compile)")
    click.echo(f"{'class':>6} {'precision':>10} {'recall':>8} {'support':>8}")
    for i in range(k):
        col, row = cm[:, i].sum(), cm[i].sum()
        prec = cm[i, i] / col if col else float("nan")
        rec = cm[i, i] / row if row else float("nan")
        click.echo(f"{names[i]:>6} {prec:>10.4f} {rec:>8.4f} {int(row):>8}")
    click.echo("confusion matrix (rows: true, columns: predicted)")
    click.echo(format_confusion(cm, names))
    if count and wrong:
        out = mistakes or (os.path.splitext(model_path)[0] + ".mistakes.png")
        idx = np.flatnonzero(pred != labels)
        conf = probs[idx, pred[idx]]
        idx = idx[np.argsort(-conf, kind="stable")][:count]
        try:
            _save_grid(out, data.test_images[idx], labels[idx], pred[idx], probs[idx, pred[idx]], names)
        except OSError as e:
            raise click.ClickException(f"cannot write {out}: {e}") from None
        click.echo(f"the {len(idx)} most confident mistakes: {out}")


def _load_test(data_dir):
    from edgecnn import data as D
    try:
        return D.load_mnist(data_dir)
    except Exception as e:
        if type(e).__module__.startswith("edgecnn") or isinstance(e, (OSError, ValueError)):
            raise click.ClickException(" ".join(str(e).split())) from None
        raise


def _save_grid(path, images, labels, pred, conf, names, scale=3, cols=6):
    """Tiles of 28x28 digits scaled up, captioned 'true -> predicted (confidence)'."""
    import cv2
    import numpy as np

    tile_w, cap = 28 * scale, 14
    rows = -(-len(images) // cols)
    grid = np.full((rows * (tile_w + cap), cols * tile_w, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = r * (tile_w + cap), c * tile_w
        big = cv2.resize(255 - img, (tile_w, tile_w), interpolation=cv2.INTER_NEAREST)
        grid[y + cap:y + cap + tile_w, x:x + tile_w] = big[:, :, None]
        cv2.rectangle(grid, (x, y + cap), (x + tile_w - 1, y + cap + tile_w - 1), (200, 200, 200), 1)
        text = f"{names[labels[i]]}->{names[pred[i]]} {conf[i]:.2f}"
        cv2.putText(grid, text, (x + 2, y + cap - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 200), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise OSError("PNG encoding failed")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)
