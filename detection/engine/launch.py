"""Command-line plumbing shared by the tools: argument parsing, config, logging, distributed setup."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

import yaml
from torch.distributed.run import main as torchrun

from detection.checkpoint.errors import CheckpointError
from detection.config import CfgNode, load_config
from detection.utils import comm
from detection.utils.io import read_text
from detection.utils.logger import setup_logger
from detection.utils.malloc import keep_freed_memory
from detection.utils.seed import resolve_seed, seed_all
from detection.utils.threads import configure_threads, log_threads

logger = logging.getLogger("detection")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The tools' --help: the description and epilog as written, ``(default: X)`` after every option
    whose help does not already say its default, and ``[KEY VALUE ...]`` for the overrides."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == ""
        if not action.option_strings or "default" in text or unset or action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs == argparse.REMAINDER:
            return f"[{action.metavar} ...]"
        return super()._format_args(action, default_metavar)


def add_config_argument(parser: argparse.ArgumentParser, default: str = "") -> None:
    """``--config FILE``, the same in every tool."""
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="YAML config file" + ("" if default else
                                                   " (default: none, the defaults of detection/config/defaults.py)"))


def add_overrides_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """The trailing ``KEY VALUE`` pairs that override the config; ``example`` (a few pairs that mean
    something for this tool) is shown in the epilog."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides after the options (keys: detection/config/defaults.py)")
    overrides = f"KEY VALUE pairs override the config file, for example:\n  {example}"
    parser.epilog = f"{parser.epilog}\n\n{overrides}" if parser.epilog else overrides


def default_parser(description: str, example: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """A tool's parser with ``--config FILE`` and trailing ``KEY VALUE`` overrides (``example`` in the
    epilog, after ``epilog``)."""
    p = argparse.ArgumentParser(description=description, epilog=epilog, formatter_class=HelpFormatter)
    add_config_argument(p)
    add_overrides_argument(p, example)
    return p


def relaunch_with_torchrun(num_procs: int) -> None:
    """``--num-gpus N``: start N processes through torchrun's own launcher, then exit."""
    argv = [a for a in sys.argv[1:]]
    i = argv.index("--num-gpus")
    del argv[i: i + 2]
    torchrun(["--standalone", f"--nproc_per_node={num_procs}", sys.argv[0], *argv])
    sys.exit(0)


def seed_of_run(output_dir: str) -> int:
    """The SEED recorded in ``output_dir/config.yaml`` by an earlier start (-1 if there is none)."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return -1
    try:
        seed = yaml.safe_load(read_text(path, "run config")).get("SEED", -1)
    except (ValueError, AttributeError, yaml.YAMLError):
        return -1
    return seed if isinstance(seed, int) and seed >= 0 else -1


def setup(args) -> CfgNode:
    """Config from --config and KEY VALUE pairs, the process group (under torchrun), logging, torch's
    threads (``detection.utils.threads``), the allocator (``detection.utils.malloc``), seed."""
    cfg = load_config(args.config or None, args.opts)
    cfg.MODEL.DEVICE = comm.init_distributed(cfg.MODEL.DEVICE)
    setup_logger(cfg.OUTPUT_DIR)
    log_threads()
    if keep_freed_memory():
        logger.info("glibc keeps freed memory for reuse (fewer page faults; DETECTION_MALLOC_DEFAULTS=1: its defaults)")
    # One seed for the run, random when SEED < 0 and then shared by all processes: the data
    # loader derives its streams from cfg.SEED, the model is initialised from SEED + rank. A resumed
    # run keeps the seed its first start drew (its config.yaml), so its batches continue the same stream.
    if cfg.SEED < 0 and getattr(args, "resume", False):
        cfg.SEED = seed_of_run(cfg.OUTPUT_DIR)
    cfg.SEED = resolve_seed(cfg.SEED)
    seed = seed_all(cfg.SEED + comm.get_rank())
    logger.info("rank %d/%d, device %s, seed %d", comm.get_rank(), comm.get_world_size(), cfg.MODEL.DEVICE, seed)
    return cfg


# What a bad input raises: configs and annotations (ValueError subclasses that name the key, file
# or record), files (OSError: missing, unreadable, not an image) and weight files.
USER_ERRORS = (ValueError, OSError, CheckpointError)


def run_tool(main: Callable[[], object]) -> None:
    """A tool's ``main()`` from the command line: a bad input ends with its message and exit
    status 2 instead of a traceback (``DETECTION_TRACEBACK=1`` shows the traceback too). torch's
    intra-op threads are set first, to the cores the process may use, and glibc told to keep freed
    memory (``detection.utils.malloc``)."""
    try:
        configure_threads()
        keep_freed_memory()
        main()
    except USER_ERRORS as e:
        if os.environ.get("DETECTION_TRACEBACK"):
            raise
        print(f"error: {e}\n(set DETECTION_TRACEBACK=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
