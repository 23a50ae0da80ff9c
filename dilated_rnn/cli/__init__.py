"""``drnn``: the command line, a thin layer over the library.

``parser`` holds the flags, ``commands`` the commands: each parses flags, calls
one library function and prints its result. Errors in user input end with a
one-line message and exit status 2; a library error that names a parameter
(``ParameterError``) is reported with the flag that set it. This package imports
neither torch nor NumPy, so ``drnn --help`` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ParameterError, ResourceError, TrainingDiverged, UserError


def _flag(command_parser: argparse.ArgumentParser, parameter: str) -> str:
    """The long flag of the command whose value is ``parameter``; the parameter's own name if none is."""
    for action in command_parser._actions:
        if action.dest == parameter and action.option_strings:
            return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
    return parameter


def main(argv=None) -> int:
    from .parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            parser.error(f"--threads must be positive, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except ResourceError as e:
        print(f"drnn {args.command}: error: {e}", file=sys.stderr)
        return 1
    except ParameterError as e:
        print(f"drnn {args.command}: error: {_flag(args.command_parser, e.parameter)} {e.problem}", file=sys.stderr)
    except UserError as e:
        print(f"drnn {args.command}: error: {e}", file=sys.stderr)
    except TrainingDiverged as e:
        print(f"drnn {args.command}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a write error: files are written whole or not at all (files.py)
        where = f"{e.filename}: " if e.filename else ""
        print(f"drnn {args.command}: error: {where}{e.strerror or e}; earlier files are intact", file=sys.stderr)
        return 1
    return 2


def entry() -> None:
    """The ``drnn`` command (and ``python -m dilated_rnn.cli``): ``main``, then the process's exit (a torchrun
    worker's, if the command ran a process group: ``training.distributed.exit_process``)."""
    code = main()
    distributed = sys.modules.get("dilated_rnn.training.distributed")  # loaded only by commands that train
    if distributed is not None:
        distributed.exit_process(code)
    sys.exit(code)
