"""The ``edgecnn`` command-line app. It parses options and calls edgecnn; it does no maths.

Each subcommand lives in its own module under cli/ and imports edgecnn's heavy modules (numba, cv2)
inside its function body, so ``edgecnn --help`` stays fast.
"""
import importlib

import click

from edgecnn import __version__

# name -> "module:attribute" of a click command, registered in this order.
COMMANDS = {
    "train": "edgecnn_cli.train:command",
    "eval": "edgecnn_cli.eval:command",
    "summary": "edgecnn_cli.summary:command",
    "predict": "edgecnn_cli.predict:command",
    "live": "edgecnn_cli.live:live",
    "filter": "edgecnn_cli.filter:filter_cmd",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="edgecnn")
def main():
    """edgecnn: Numba CNNs for edge vision (train on MNIST, classify a live camera)."""


for _name, _target in COMMANDS.items():
    _module, _attr = _target.split(":")
    main.add_command(getattr(importlib.import_module(_module), _attr), _name)


if __name__ == "__main__":
    main()
