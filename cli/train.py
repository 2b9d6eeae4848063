"""``edgecnn train``: train a model on MNIST and save it as one model file."""
import os
import sys
import time

import click

DEFAULT_OUTPUT = "edgecnn-model.ecnn"
# Settings a resumed run may change; everything else comes from the checkpoint.
RESUME_OVERRIDES = ("epochs", "patience", "threads", "data_dir", "device")


def _default_run_dir(output):
    root, ext = os.path.splitext(output)
    return (root if ext else output) + ".run"


@click.command("train", context_settings={"show_default": True})
@click.option("--model", "model", default="default", metavar="NAME|FILE.json",
              help="Zoo model (default, keras-mnist, lenet5) or an architecture JSON file (Model.get_config()).")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Epochs [default: the model's recipe].")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Batch size [default: recipe].")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "nesterov"]), default=None,
              help="Optimizer [default: recipe].")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Peak learning rate [default: recipe].")
@click.option("--schedule", type=click.Choice(["constant", "step", "cosine", "one_cycle"]), default=None,
              help="Learning-rate schedule [default: recipe].")
@click.option("--warmup", type=click.FloatRange(0), default=None, help="Warm-up length in epochs [default: recipe].")
@click.option("--augment/--no-augment", default=None, help="Random shifts, rotations, scaling [default: recipe].")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, help="Weight decay.")
@click.option("--seed", type=click.IntRange(0), default=0, help="Seed for weights, data order, augmentation, dropout.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the MNIST IDX files [default: $EDGECNN_DATA_DIR, else the user cache; "
                   "downloaded when missing].")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=DEFAULT_OUTPUT, help="Model file to write.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint and JSON-lines log folder [default: OUTPUT without extension + .run].")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu",
              help="Where to train: cuda keeps the whole training step on the GPU (needs the cuda extra); "
                   "auto picks cuda when a GPU is usable, else cpu.")
@click.option("--threads", type=click.IntRange(1), default=None, help="Kernel threads [default: all cores].")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir exactly where its checkpoint stopped.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.05,
              help="Share of the training images held out for validation.")
@click.option("--patience", type=click.IntRange(0), default=0,
              help="Stop after this many epochs without a lower validation loss (0: never).")
@click.option("--filter", "filters", multiple=True, metavar="SPEC",
              help="Classic filter run on every image before training and inference (repeatable, e.g. "
                   "--filter gaussian --filter sobel_x); stored in the model file.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Train on the first N images only (quick tries).")
@click.pass_context
def command(ctx, model, epochs, batch_size, optimizer, lr, schedule, warmup, augment, weight_decay, seed, data_dir,
            output, run_dir, device, threads, resume, val_fraction, patience, filters, limit):
    """Train a CNN on MNIST and save it (default: the fast default model to ./edgecnn-model.ecnn).

    Progress goes to stderr; each epoch is appended to RUN_DIR/train_log.jsonl and checkpointed to
    RUN_DIR/checkpoint.ecnn-ckpt, so Ctrl-C (or a crash) loses at most one batch: run the same command
    with --resume to continue.
    """
    t0 = time.perf_counter()
    from edgecnn import checkpoint as ckpt
    from edgecnn import io as eio
    from edgecnn.train import Diverged, Interrupted, TrainConfig, Trainer, format_confusion

    run_dir = run_dir or _default_run_dir(output)
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}
    if resume:
        path = ckpt.path_in(run_dir)
        if not os.path.exists(path):
            raise click.ClickException(f"--resume: no checkpoint at {path} (is --run-dir/--output the same as "
                                       f"the run you want to continue?)")
        fixed = sorted(given - set(RESUME_OVERRIDES) - {"resume", "output", "run_dir"})
        if fixed:
            opts = ", ".join("--" + f.replace("_", "-") for f in fixed)
            raise click.UsageError(f"--resume continues the run with its saved settings; {opts} cannot be "
                                   f"changed (only --epochs, --patience, --threads, --data-dir, --device)")
        try:
            config, _ = Trainer.config_from_checkpoint(
                path, **{k: v for k, v in dict(epochs=epochs, patience=patience if "patience" in given else None,
                                               threads=threads, data_dir=data_dir,
                                               device=device if "device" in given else None).items()})
        except ckpt.CheckpointError as e:
            raise click.ClickException(str(e)) from None
        except TypeError as e:
            raise click.ClickException(f"{path}: checkpoint settings are not understood ({e})") from None
    else:
        config = TrainConfig(model=model, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                             schedule=schedule, warmup=warmup, augment=augment, weight_decay=weight_decay,
                             seed=seed, val_fraction=val_fraction, patience=patience, limit=limit,
                             threads=threads, device=device, data_dir=data_dir, filters=list(filters) or None)
    try:
        resolved = config.resolved()
    except ValueError as e:
        raise click.UsageError(str(e).replace("TrainConfig: ", "")) from None
    where = _device(resolved.device)
    _announce(resolved, run_dir, resume, where)
    trainer = Trainer(config, run_dir=run_dir)
    try:
        result = trainer.run(resume=resume)
    except Interrupted as e:
        click.echo(f"\n{e}", err=True)
        ctx.exit(130)
    except Diverged as e:
        raise click.ClickException(str(e)) from None
    except (ValueError, TypeError, OSError, ckpt.CheckpointError) as e:
        raise click.ClickException(_one_line(e)) from None
    except Exception as e:  # the data module's own errors (DataError...) carry the useful message
        if type(e).__name__.endswith("Error") and type(e).__module__.startswith("edgecnn"):
            raise click.ClickException(_one_line(e)) from None
        raise

    meta = {"training": result.summary()}
    try:
        eio.save(output, result.model, result.preprocessing(), metadata=meta)
    except eio.ModelFileError as e:
        raise click.ClickException(str(e)) from None
    wall = time.perf_counter() - t0
    if result.confusion is not None:
        click.echo("confusion matrix (rows: true digit, columns: predicted)")
        click.echo(format_confusion(result.confusion))
        click.echo(f"test accuracy {result.test_accuracy:.2%} (loss {result.test_loss:.4f})")
    status = "" if result.status == "completed" else f" ({result.status.replace('_', ' ')})"
    n = len(result.history)
    on = f"{result.threads} threads" if result.device == "cpu" else result.device
    click.echo(f"{n} epoch{'' if n == 1 else 's'}{status} in {wall:.1f}s wall: JIT warm-up {result.warmup_seconds:.1f}s, "
               f"training {result.train_seconds:.1f}s, {on}")
    click.echo(f"saved {output}  (run log and checkpoint in {run_dir})")


def _one_line(e):
    return " ".join(str(e).split())


def _device(name):
    """'cpu' / 'cuda' with how it was chosen, for the run header; one clear error line when cuda cannot
    run here (the message names the cause and the fix)."""
    from edgecnn.device import CudaUnavailableError, resolve
    try:
        got = resolve(name, what=f"--device {name}")
    except CudaUnavailableError as e:
        raise click.ClickException(_one_line(e)) from None
    if name == "auto":
        return f"{got} (auto: {'a CUDA GPU is usable' if got == 'cuda' else 'no usable CUDA GPU'})"
    return got


def _announce(c, run_dir, resume, where="cpu"):
    what = "resuming" if resume else "training"
    model = c.model if isinstance(c.model, str) else "custom model"
    click.echo(f"{what} {model} on {where}: {c.epochs} epochs, batch {c.batch_size}, {c.optimizer} lr {c.lr:g} "
               f"{c.schedule}{f' warm-up {c.warmup:g} ep' if c.warmup else ''}, augment {'on' if c.augment else 'off'}, "
               f"seed {c.seed}, val {c.val_fraction:g}{f', limit {c.limit}' if c.limit else ''}; run dir {run_dir}",
               err=True)
    sys.stderr.flush()
