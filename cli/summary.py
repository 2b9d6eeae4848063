"""``edgecnn summary MODEL_OR_ZOO_NAME``: layers, output shapes, parameter counts (and a file's metadata)."""
import os

import click


@click.command("summary")
@click.argument("target", metavar="MODEL_OR_ZOO_NAME")
def command(target):
    """Print the layer table of a model file, an architecture JSON file or a zoo model (default,
    keras-mnist, lenet5)."""
    if os.path.isfile(target) and not target.endswith(".json"):
        from edgecnn import io as eio
        try:
            clf = eio.load(target)
        except eio.ModelFileError as e:
            raise click.ClickException(str(e)) from None
        clf.model.summary(print_fn=click.echo)
        _describe_file(clf)
        return
    from edgecnn.train import build_model
    try:
        model = build_model(target)
    except ValueError as e:
        raise click.ClickException(" ".join(str(e).split())) from None
    model.summary(print_fn=click.echo)


def _describe_file(clf):
    meta = clf.metadata
    pre = clf.preprocessing
    click.echo(f"classes: {', '.join(clf.class_names)}")
    click.echo(f"normalization: {pre.get('normalization')}; filters: {pre.get('filters') or 'none'}")
    click.echo(f"written by edgecnn {meta.get('edgecnn_version', '?')} at {meta.get('created', '?')}")
    tr = meta.get("training")
    if isinstance(tr, dict):
        acc = tr.get("test_accuracy")
        acc = f"{acc:.2%}" if isinstance(acc, (int, float)) else "not measured"
        secs = tr.get("train_seconds")
        click.echo(f"trained: {tr.get('model', '?')}, {tr.get('epochs_run', '?')} epochs "
                   f"({tr.get('status', '?')}), {secs}s training; test accuracy {acc}")
