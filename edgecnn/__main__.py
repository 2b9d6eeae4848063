"""``python -m edgecnn`` runs the command-line app."""
from edgecnn_cli.main import main

if __name__ == "__main__":
    main(prog_name="edgecnn")
